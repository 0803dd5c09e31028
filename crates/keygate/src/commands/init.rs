//! `keygate init`: parse, call [`keygate_admin::init`], print what was made and what to do next.

use anyhow::{Result, bail};
use keygate_admin::init::{InitRequest, Initialized, init};
use keygate_config::MasterKeySource;

use crate::cli::{Cli, InitArgs};

pub async fn run(cli: &Cli, args: &InitArgs) -> Result<()> {
    if cli.config.is_some() {
        bail!(
            "`init` writes its config inside the data directory; drop --config and use --data-dir"
        );
    }
    let made = init(&InitRequest {
        data_dir: cli.data_dir.clone(),
        passphrase: args.passphrase,
        store_url: args.store_url.clone(),
    })
    .await?;
    print_summary(cli, &made);
    Ok(())
}

fn print_summary(cli: &Cli, made: &Initialized) {
    let Initialized {
        paths,
        config,
        source,
        master_key_id,
        store,
    } = made;
    let source = *source;
    let dir = cli.data_dir.display();
    let key_path = paths.key_material(config);
    println!("Created keygate data directory {dir}");
    println!("  config      {}", paths.config_file.display());
    match source {
        MasterKeySource::File => println!(
            "  master key  {} (mode 0600, id {})",
            key_path.display(),
            master_key_id
        ),
        MasterKeySource::Passphrase => println!(
            "  master key  from your passphrase, Argon2id parameters in {} (id {})",
            key_path.display(),
            master_key_id
        ),
    }
    println!("  store       {store}");
    println!("  policies    {}", paths.base.join("policies").display());
    println!();
    match source {
        MasterKeySource::File => {
            println!("Back up the master key file: without it no credential can be decrypted.")
        }
        MasterKeySource::Passphrase => println!(
            "Back up the parameters file and remember the passphrase: without both no credential can be decrypted."
        ),
    }
    println!("Next: keygate --data-dir {dir} credential add --venue NAME --kind binance-hmac");
    println!(
        "      keygate --data-dir {dir} client add NAME --venue NAME --action read --action trade"
    );
}
