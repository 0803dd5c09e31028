//! Stored ciphertexts that were altered or moved to another row fail to decrypt with a clear
//! error: never garbage, never a panic.

use keygate_store::{OpenMode, Store};

use crate::util::Kg;

fn with_store<T>(kg: &Kg, f: impl AsyncFnOnce(Store) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = Store::connect(&kg.db_url(), OpenMode::Existing)
            .await
            .unwrap();
        let out = f(s.clone()).await;
        s.close().await;
        out
    })
}

async fn set_blob(s: &Store, column: &str, id: &str, value: Vec<u8>) {
    let sql = format!("UPDATE credentials SET {column} = $1 WHERE id = $2");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(id)
        .execute(s.pool())
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

fn setup() -> (Kg, String, String) {
    let mut kg = Kg::new();
    kg.ok(&["init"], None);
    let a = kg.add("binance-main", "binance-hmac", "key-a\nsecret-a\n");
    let b = kg.add("binance-main", "binance-hmac", "key-b\nsecret-b\n");
    kg.ok(&["credential", "verify"], None);
    (kg, a, b)
}

#[test]
fn flipping_one_byte_of_a_ciphertext_fails_clearly() {
    for column in ["ciphertext", "wrapped_key"] {
        for position in [1usize, 13, usize::MAX] {
            let (mut kg, a, b) = setup();
            with_store(&kg, async |s| {
                let row = s.active_credential(&a).await.unwrap().unwrap();
                let mut bytes = if column == "ciphertext" {
                    row.ciphertext
                } else {
                    row.wrapped_key
                };
                let i = position.min(bytes.len() - 1);
                bytes[i] ^= 0x01;
                set_blob(&s, column, &a, bytes).await;
            });
            let out = kg.run(&["credential", "verify"], None);
            assert_eq!(out.status.code(), Some(1));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stdout.contains(&format!("FAILED  {a} version 1"))
                    && stdout.contains("failed to decrypt"),
                "{column}@{position}: {stdout}"
            );
            // The untouched credential still verifies, and nothing panicked.
            assert!(
                stdout.contains(&format!("ok      {b} version 1")),
                "{stdout}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert!(
                stderr.contains("1 of 2 credential version(s) failed"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn a_ciphertext_moved_to_another_row_fails_clearly() {
    let (mut kg, a, b) = setup();
    with_store(&kg, async |s| {
        let ra = s.active_credential(&a).await.unwrap().unwrap();
        // Copy a's sealed secret and its wrapped data key over b's row.
        set_blob(&s, "ciphertext", &b, ra.ciphertext).await;
        set_blob(&s, "wrapped_key", &b, ra.wrapped_key).await;
    });
    let out = kg.run(&["credential", "verify", &b], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("failed to decrypt") && stdout.contains("moved from another credential"),
        "{stdout}"
    );
    kg.ok(&["credential", "verify", &a], None);
}

#[test]
fn a_truncated_ciphertext_fails_clearly() {
    let (mut kg, a, _b) = setup();
    with_store(&kg, async |s| {
        set_blob(&s, "ciphertext", &a, vec![1, 2, 3]).await
    });
    let out = kg.run(&["credential", "verify", &a], None);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("truncated or malformed"), "{stdout}");
}
