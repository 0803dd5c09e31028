//! The watcher's checkpoint: the blocks judged (number and hash; see [`super::reorg`] for which
//! are kept), each treasury's nonce along them and the first block judged, one text under
//! [`super::checkpoint_key`], written after each block and read again after a failed step.
//!
//! It must not know how the text is kept (that is [`crate::persist::Checkpoints`]).

use alloy::primitives::{Address, B256};

use crate::hash_text;
use crate::persist::WatchStore;

use super::judge::NonceBase;
use super::{WatchError, Watcher, checkpoint_key};

/// The checkpoint as stored: the kept blocks, and the nonces (absent in checkpoints written
/// before the nonce comparison).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Stored {
    Blocks(Vec<(u64, String)>),
    Full {
        blocks: Vec<(u64, String)>,
        nonces: Vec<(Address, NonceBase)>,
        #[serde(default)]
        first: Option<(u64, B256)>,
    },
}

impl<P: WatchStore> Watcher<P> {
    pub(super) async fn load(&mut self) -> Result<(), WatchError> {
        if self.loaded {
            return Ok(());
        }
        let key = checkpoint_key(&self.venue.name);
        if let Some(text) = self.store.checkpoint(&key).await? {
            let stored: Stored =
                serde_json::from_str(&text).map_err(|e| WatchError::Checkpoint {
                    key: key.clone(),
                    detail: e.to_string(),
                })?;
            let list = match stored {
                Stored::Blocks(list) => list,
                Stored::Full {
                    blocks,
                    nonces,
                    first,
                } => {
                    self.nonces = nonces.into_iter().collect();
                    self.first = first;
                    blocks
                }
            };
            for (n, h) in list {
                let h: B256 = h.parse().map_err(|_| WatchError::Checkpoint {
                    key: key.clone(),
                    detail: format!("block {n}'s hash is not a hash"),
                })?;
                if self.kept.back().is_some_and(|(m, _)| *m >= n) {
                    return Err(WatchError::Checkpoint {
                        key,
                        detail: format!("block {n} is not above the block before it"),
                    });
                }
                self.kept.push_back((n, h));
            }
        }
        self.loaded = true;
        Ok(())
    }

    pub(super) async fn save(&self) -> Result<(), WatchError> {
        let stored = Stored::Full {
            blocks: self.kept.iter().map(|(n, h)| (*n, hash_text(h))).collect(),
            nonces: self.nonces.iter().map(|(a, b)| (*a, *b)).collect(),
            first: self.first,
        };
        let text = serde_json::to_string(&stored).map_err(|e| WatchError::Checkpoint {
            key: checkpoint_key(&self.venue.name),
            detail: e.to_string(),
        })?;
        self.store
            .set_checkpoint(&checkpoint_key(&self.venue.name), &text)
            .await?;
        Ok(())
    }
}
