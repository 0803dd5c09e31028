//! Reading secrets: from the terminal without echo, or from stdin one part per line. Never from
//! argv, where other users' `ps` and shell history would see them.

use std::io::{IsTerminal, Read};

use crate::error::{Context, Result, bail};
use keygate_vault::{CredentialKind, SecretString};
use zeroize::Zeroizing;

/// Largest secret input accepted on stdin.
const MAX_STDIN: u64 = 64 * 1024;

/// The secret parts of a credential of `kind`.
pub fn read_secret_parts(kind: CredentialKind) -> Result<Vec<SecretString>> {
    let names = kind.parts();
    if std::io::stdin().is_terminal() {
        names
            .iter()
            .map(|name| {
                rpassword::prompt_password(format!("{name} (not echoed): "))
                    .map(SecretString::new)
                    .with_context(|| format!("cannot read the {name} from the terminal"))
            })
            .collect()
    } else {
        // Room for all of it up front: a growing buffer would leave unzeroed copies behind.
        let mut text = Zeroizing::new(String::with_capacity(MAX_STDIN as usize + 1));
        std::io::stdin()
            .take(MAX_STDIN + 1)
            .read_to_string(&mut text)
            .context("cannot read the secret from stdin (is it UTF-8 text?)")?;
        if text.len() as u64 > MAX_STDIN {
            bail!("stdin holds more than {MAX_STDIN} bytes; a credential's parts are far shorter");
        }
        split_parts(kind, &text)
    }
}

/// One part per line; `\r\n` endings and trailing empty lines are allowed.
fn split_parts(kind: CredentialKind, text: &str) -> Result<Vec<SecretString>> {
    let names = kind.parts();
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.len() != names.len() {
        bail!(
            "expected {} line(s) on stdin for a {kind} credential ({}), one part per line; got {}",
            names.len(),
            names.join(", then "),
            lines.len()
        );
    }
    Ok(lines
        .into_iter()
        .map(|l| SecretString::new(l.to_string()))
        .collect())
}

/// A passphrase from `env_var` if set, else from the terminal (asked twice when `confirm`).
pub fn read_passphrase(env_var: &str, prompt: &str, confirm: bool) -> Result<SecretString> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(SecretString::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set {env_var}, or run this in a terminal to be asked for it");
    }
    let first = SecretString::new(
        rpassword::prompt_password(format!("{prompt}: "))
            .context("cannot read the passphrase from the terminal")?,
    );
    if confirm {
        let again = SecretString::new(
            rpassword::prompt_password("Repeat it: ")
                .context("cannot read the passphrase from the terminal")?,
        );
        if again != first {
            bail!("the two passphrases differ; nothing was changed");
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_one_part_per_line() {
        let p = split_parts(CredentialKind::OkxHmac, "k\r\ns\np\n\n").unwrap();
        let got: Vec<&str> = p.iter().map(|s| s.expose()).collect();
        assert_eq!(got, ["k", "s", "p"]);
    }

    #[test]
    fn any_input_gives_parts_or_an_error_without_the_content() {
        // A cheap stand-in for fuzzing: odd line endings, empty lines, unicode.
        for text in [
            "",
            "\n",
            "\r\n\r\n",
            "a\n\nb\n",
            "ä\r\n✓\n",
            "a\rb\n",
            "a\nb\nc\nd",
        ] {
            match split_parts(CredentialKind::BinanceHmac, text) {
                Ok(parts) => assert_eq!(parts.len(), 2, "{text:?}"),
                Err(e) => assert!(e.to_string().contains("expected 2 line(s)"), "{e}"),
            }
        }
    }

    #[test]
    fn wrong_line_count_names_the_parts_not_the_content() {
        let e = split_parts(CredentialKind::BinanceHmac, "only-one-canary\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected 2 line(s)") && e.contains("got 1"),
            "{e}"
        );
        assert!(!e.contains("canary"), "{e}");
        assert!(split_parts(CredentialKind::EvmKey, "").is_err());
    }
}
