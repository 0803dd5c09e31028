//! Alarms that are not an outflow: a watcher that has lost track of a chain (a reorg deeper
//! than it can re-check, a node it has not been able to follow for a while). Each is a critical
//! audit entry, and, when a containment scope is given, the freeze of that scope in the same
//! transaction, as an unapproved outflow would set.

use keygate_core::freeze::Scope;
use serde_json::Value;

use std::borrow::Cow;

use crate::audit::{Alarm, AuditEntry, NewEntry, append, lock_head_at};
use crate::{Store, StoreError};

impl Store {
    /// Records a critical alarm `event` (such as `chain.reorg_beyond_history`) by `actor`, with
    /// a `reason` a person can act on and `details`; sets a freeze of `contain` with it when
    /// given. Returns the alarm's audit entry and the freeze's id.
    pub async fn record_alarm(
        &self,
        event: &str,
        actor: &str,
        reason: &str,
        details: Value,
        contain: Option<&Scope>,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let mut tx = self.begin_write().await?;
        let (mut head, now) = lock_head_at(&mut tx, self).await?;
        let alarm = AuditEntry::Alarm(Alarm {
            event: Cow::Borrowed(event),
            severity: Cow::Borrowed("critical"),
            reason: Cow::Borrowed(reason),
            details,
        });
        let mut entries = vec![NewEntry::new(actor.to_string(), now, &alarm, None)];
        let mut freeze_id = None;
        if let Some(scope) = contain {
            let id = crate::freeze::set_in(&mut tx, scope, reason, actor, now).await?;
            entries.push(crate::freeze::freeze_entry(id, scope, reason, actor, now));
            freeze_id = Some(id);
        }
        let seqs = append(&mut tx, &mut head, entries, now).await?;
        tx.commit().await?;
        Ok((seqs.first().copied().unwrap_or_default(), freeze_id))
    }
}
