//! EIP-1559 transfers: native value or an ERC-20 `transfer(to, value)` call, with the chain id,
//! gas and fees asked of the node, signed with alloy's local signer from a vault key. The key is
//! held in a zeroizing signer and never printed; `Debug` shows its address only.

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use zeroize::Zeroizing;

use crate::rpc::{Rpc, RpcError};

alloy::sol! {
    /// ERC-20's transfer.
    function transfer(address to, uint256 value) external returns (bool);
    /// ERC-20's balance.
    function balanceOf(address owner) external view returns (uint256);
    /// ERC-20's Transfer event.
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// ERC-20's Approval event.
    event Approval(address indexed owner, address indexed spender, uint256 value);
}

/// A signing key opened from the vault.
pub struct Key(PrivateKeySigner);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:#x})", self.0.address())
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the credential is not a secp256k1 private key (64 hex characters)")]
pub struct KeyError;

impl Key {
    /// A key from its hex text (with or without 0x), as the vault keeps an `evm-key`.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let h = text.trim();
        let h = h.strip_prefix("0x").unwrap_or(h);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(h, bytes.as_mut()).map_err(|_| KeyError)?;
        PrivateKeySigner::from_slice(bytes.as_ref())
            .map(Key)
            .map_err(|_| KeyError)
    }

    pub fn address(&self) -> Address {
        self.0.address()
    }
}

/// A transfer ready to be signed once it has a nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub chain_id: u64,
    pub from: Address,
    /// The transaction's recipient: the destination, or the token contract.
    pub to: Address,
    pub value: U256,
    pub input: Bytes,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// A signed transaction.
#[derive(Debug, Clone)]
pub struct Signed {
    pub hash: B256,
    pub nonce: u64,
    pub raw: Vec<u8>,
}

/// Why a transfer could not be prepared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the node is on chain {node}, but the venue is configured for chain {configured}")]
    WrongChain { node: u64, configured: u64 },
}

/// The call and value of a transfer of `units` of an asset (`token` None: the native asset).
pub fn call(token: Option<Address>, to: Address, units: U256) -> (Address, U256, Bytes) {
    match token {
        None => (to, units, Bytes::new()),
        Some(contract) => (
            contract,
            U256::ZERO,
            Bytes::from(transferCall { to, value: units }.abi_encode()),
        ),
    }
}

/// Asks the node for what a transfer needs: its chain id (checked), the gas the call uses
/// (with a 20 % margin; a call that would revert, such as one beyond the balance, fails here)
/// and the fees (max fee: twice the next base fee plus the tip).
pub async fn prepare(
    rpc: &Rpc,
    chain_id: u64,
    from: Address,
    token: Option<Address>,
    to: Address,
    units: U256,
) -> Result<Plan, PrepareError> {
    let node = rpc.chain_id().await?;
    if node != chain_id {
        return Err(PrepareError::WrongChain {
            node,
            configured: chain_id,
        });
    }
    let (tx_to, value, input) = call(token, to, units);
    let gas = rpc.estimate_gas(&from, &tx_to, value, &input).await?;
    let (base, tip) = rpc.fees().await?;
    Ok(Plan {
        chain_id,
        from,
        to: tx_to,
        value,
        input,
        gas_limit: gas.saturating_add(gas / 5),
        max_fee_per_gas: base.saturating_mul(2).saturating_add(tip),
        max_priority_fee_per_gas: tip,
    })
}

/// The ERC-20 balance of `owner` at `token`, asked of the node at its newest block.
pub async fn token_balance(rpc: &Rpc, token: Address, owner: Address) -> Result<U256, RpcError> {
    let input = Bytes::from(balanceOfCall { owner }.abi_encode());
    let out = rpc.view(&token, &input).await?;
    if out.len() < 32 {
        return Err(RpcError::Bad {
            method: "eth_call",
            detail: format!("balanceOf answered {} bytes, not a uint256", out.len()),
        });
    }
    Ok(U256::from_be_slice(&out[..32]))
}

/// Signs `plan` with `nonce`.
pub fn sign(key: &Key, plan: &Plan, nonce: u64) -> Result<Signed, KeyError> {
    let tx = TxEip1559 {
        chain_id: plan.chain_id,
        nonce,
        gas_limit: plan.gas_limit,
        max_fee_per_gas: plan.max_fee_per_gas,
        max_priority_fee_per_gas: plan.max_priority_fee_per_gas,
        to: TxKind::Call(plan.to),
        value: plan.value,
        access_list: Default::default(),
        input: plan.input.clone(),
    };
    let sig = key
        .0
        .sign_hash_sync(&tx.signature_hash())
        .map_err(|_| KeyError)?;
    let envelope = TxEnvelope::from(tx.into_signed(sig));
    Ok(Signed {
        hash: *envelope.tx_hash(),
        nonce,
        raw: envelope.encoded_2718(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::eips::eip2718::Decodable2718;

    // Anvil's first default account (public test key).
    const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn signs_a_transaction_that_recovers_to_the_key() {
        let key = Key::from_hex(KEY).unwrap();
        let expected: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap();
        assert_eq!(key.address(), expected);
        assert!(!format!("{key:?}").contains(KEY));
        let to = Address::repeat_byte(7);
        let (tx_to, value, input) = call(Some(Address::repeat_byte(1)), to, U256::from(5u8));
        assert_eq!(value, U256::ZERO);
        assert_eq!(&input[..4], &transferCall::SELECTOR);
        let plan = Plan {
            chain_id: 31337,
            from: key.address(),
            to: tx_to,
            value,
            input,
            gas_limit: 60_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
        };
        let s = sign(&key, &plan, 3).unwrap();
        let back = TxEnvelope::decode_2718(&mut s.raw.as_slice()).unwrap();
        assert_eq!(*back.tx_hash(), s.hash);
        let inner = back.as_eip1559().unwrap();
        let signer = inner
            .signature()
            .recover_address_from_prehash(&inner.signature_hash())
            .unwrap();
        assert_eq!(signer, expected);
        assert!(Key::from_hex("zz").is_err());
    }
}
