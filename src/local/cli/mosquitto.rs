//! `iotjobs-local mosquitto-config`: argument parsing and the user-facing output around
//! [`crate::local::mosquitto::write`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::local::mosquitto::{self, MosquittoOptions};
use crate::local::pki::Pki;

#[derive(Debug, Args)]
pub struct MosquittoConfigArgs {
    /// Directory for mosquitto.conf, acl, ca.pem, server.pem and server.key (created 0700).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Data directory whose CA signs everything (the one `serve` uses; created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Port of mosquitto's mutual-TLS listener.
    #[arg(long, default_value_t = crate::local::external::DEFAULT_PORT)]
    pub port: u16,
    /// Address mosquitto listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: String,
    /// Another host name or IP address for the broker's certificate (besides localhost,
    /// 127.0.0.1 and ::1), as devices on other machines reach it. Repeatable.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// mosquitto's `user` (started as root it switches to it before reading the key).
    /// Default: the user running this command, who owns the files.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

pub fn run(args: MosquittoConfigArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(super::default_data_dir);
    let pki_dir = crate::local::server::pki_dir(&data_dir);
    let pki = Pki::load_or_create(&pki_dir)
        .with_context(|| format!("the local CA in {}", pki_dir.display()))?;
    let opts = MosquittoOptions {
        out_dir: args.out,
        bind: args.bind,
        port: args.port,
        hosts: args.hosts,
        user: args.user,
    };
    let files = mosquitto::write(&pki, &opts)?;
    let host = match opts.hosts.first() {
        Some(h) if h.contains(':') => format!("[{h}]"),
        Some(h) => h.clone(),
        None => "localhost".to_owned(),
    };
    println!("mosquitto configuration written:");
    for (what, path) in [
        ("config", &files.conf),
        ("ACL", &files.acl),
        ("CA", &files.ca),
        ("server cert", &files.cert),
        ("server key", &files.key),
    ] {
        println!("  {what:<12} {}", path.display());
    }
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    if let Some(user) = opts.user.as_deref().filter(|u| Some(*u) != me.as_deref()) {
        // The files belong to us with a private key and directory: the other user cannot
        // read them until the operator grants it.
        let dir = files.conf.parent().unwrap_or(&files.conf).display();
        println!(
            "note: mosquitto will run as {user}; let it read the files, e.g.\n  \
             chgrp {user} {dir} {key} && chmod 750 {dir} && chmod 640 {key}\n  \
             (and every parent directory must be searchable by {user})",
            key = files.key.display()
        );
    }
    println!("next:");
    println!("  mosquitto -c {}", files.conf.display());
    println!(
        "  iotjobs-local serve --data-dir {} --broker mqtts://{host}:{}",
        data_dir.display(),
        opts.port
    );
    Ok(ExitCode::SUCCESS)
}
