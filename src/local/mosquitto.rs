//! `iotjobs-local mosquitto-config`: a mosquitto configuration for the external-broker mode,
//! made from the local CA, with the same identity and topic policy as the embedded broker.
//!
//! * mutual TLS: `require_certificate true`, the client certificate's CN is the username
//!   (`use_identity_as_username`), so the thing name for devices and
//!   [`SERVICE_IDENTITY`] for the Jobs service; the username is also the client id
//!   (`use_username_as_clientid`), as the embedded broker requires client id = CN, so a
//!   device cannot take over another thing's session by claiming its client id;
//! * ACL: the service may read and write `$aws/things/+/jobs/#` (a `$` topic is never
//!   matched by `#`, so the filter is spelled out), and each device only
//!   `$aws/things/<its CN>/#`: the local equivalent of the usual AWS IoT policy;
//! * `set_tcp_nodelay true`: without it each TLS exchange waits ~40 ms on Nagle.
//!
//! Owns: the text of `mosquitto.conf` and `acl` (pure functions, unit-tested) and writing
//! them with the broker's certificate. Must not: start mosquitto.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::local::pki::{Pki, PkiError, LOOPBACK_SANS, SERVICE_IDENTITY};

/// File names inside the output directory.
pub const CONF_FILE: &str = "mosquitto.conf";
pub const ACL_FILE: &str = "acl";
pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "server.pem";
pub const KEY_FILE: &str = "server.key";

/// Errors writing the configuration.
#[derive(Debug, thiserror::Error)]
pub enum MosquittoConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate authority: {0}")]
    Pki(#[from] PkiError),
    #[error("{what} {value:?} cannot go into mosquitto.conf (no line breaks, no leading or trailing blanks)")]
    Unsafe { what: &'static str, value: String },
    #[error("the user running this command has no name; pass --user NAME")]
    NoUserName,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// Output directory (created with mode 0700 if missing).
    pub out_dir: PathBuf,
    /// Listener address (mosquitto's `listener PORT ADDRESS`).
    pub bind: String,
    pub port: u16,
    /// Extra names/addresses for the broker's certificate, besides localhost, 127.0.0.1
    /// and ::1: what devices put in `mqtt.endpoint` when they are not on this machine.
    pub hosts: Vec<String>,
    /// mosquitto's `user`: started as root it switches to this user *before* reading the
    /// key, so it must be able to read the output directory. Default: the user running
    /// this command (the owner of the files).
    pub user: Option<String>,
}

/// The files written.
#[derive(Debug, Clone)]
pub struct MosquittoFiles {
    pub conf: PathBuf,
    pub acl: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The ACL: the Jobs service on every thing's Jobs topics, each device on its own topics.
pub fn acl_text() -> String {
    format!(
        "# Written by `iotjobs-local mosquitto-config`: the embedded broker's policy.\n\
         # The username is the client certificate's CN (use_identity_as_username).\n\
         \n\
         # The Jobs service (certificate CN {SERVICE_IDENTITY}). `#` alone would not match\n\
         # `$aws/...` topics, so the filter is explicit.\n\
         user {SERVICE_IDENTITY}\n\
         topic readwrite $aws/things/+/jobs/#\n\
         \n\
         # Each device (certificate CN = thing name): only its own topics.\n\
         pattern readwrite $aws/things/%u/#\n"
    )
}

/// `mosquitto.conf` for `files`; `user` is mosquitto's `user` option.
pub fn conf_text(opts: &MosquittoOptions, user: &str, files: &MosquittoFiles) -> String {
    format!(
        "# Written by `iotjobs-local mosquitto-config` for\n\
         #   iotjobs-local serve --broker mqtts://HOST:{port}\n\
         # Run it with: mosquitto -c {conf}\n\
         \n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         acl_file {acl}\n\
         # Started as root, mosquitto switches to this user before it reads the key.\n\
         user {user}\n\
         # Without it every exchange over TLS waits ~40 ms for Nagle's algorithm.\n\
         set_tcp_nodelay true\n\
         log_dest stderr\n\
         connection_messages true\n\
         \n\
         listener {port} {bind}\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         # Client id = certificate CN: no device can take over another's session.\n\
         use_username_as_clientid true\n\
         tls_version tlsv1.2\n",
        port = opts.port,
        bind = opts.bind,
        conf = files.conf.display(),
        acl = files.acl.display(),
        ca = files.ca.display(),
        cert = files.cert.display(),
        key = files.key.display(),
    )
}

/// Writes the broker's certificate (SANs: loopback plus `opts.hosts`) and key, the CA, the
/// ACL and `mosquitto.conf` into `opts.out_dir`; returns their absolute paths.
pub fn write(pki: &Pki, opts: &MosquittoOptions) -> Result<MosquittoFiles, MosquittoConfigError> {
    let user = match &opts.user {
        Some(u) => u.clone(),
        None => current_user()?,
    };
    check_line("user", &user)?;
    check_line("listener address", &opts.bind)?;
    for h in &opts.hosts {
        check_line("host", h)?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&opts.out_dir)
        .map_err(io_err(&opts.out_dir))?;
    let dir = std::fs::canonicalize(&opts.out_dir).map_err(io_err(&opts.out_dir))?;
    check_line("output directory", &dir.display().to_string())?;
    let files = MosquittoFiles {
        conf: dir.join(CONF_FILE),
        acl: dir.join(ACL_FILE),
        ca: dir.join(CA_FILE),
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    };

    let mut sans: Vec<String> = LOOPBACK_SANS.iter().map(|s| s.to_string()).collect();
    for h in &opts.hosts {
        if !sans.contains(h) {
            sans.push(h.clone());
        }
    }
    let server = pki.issue_server_cert(&sans)?;
    write_file(&files.key, server.key_pair.private_key.as_bytes(), 0o600)?;
    write_file(&files.cert, server.certificate_pem.as_bytes(), 0o644)?;
    write_file(&files.ca, pki.ca_cert_pem().as_bytes(), 0o644)?;
    write_file(&files.acl, acl_text().as_bytes(), 0o644)?;
    write_file(
        &files.conf,
        conf_text(opts, &user, &files).as_bytes(),
        0o644,
    )?;
    Ok(files)
}

/// mosquitto.conf is line-based: a value with a line break would add directives.
fn check_line(what: &'static str, value: &str) -> Result<(), MosquittoConfigError> {
    if value.is_empty() || value.contains(['\n', '\r']) || value.trim() != value {
        return Err(MosquittoConfigError::Unsafe {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn current_user() -> Result<String, MosquittoConfigError> {
    match nix::unistd::User::from_uid(nix::unistd::geteuid()) {
        Ok(Some(u)) => Ok(u.name),
        _ => Err(MosquittoConfigError::NoUserName),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MosquittoConfigError + '_ {
    move |source| MosquittoConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), MosquittoConfigError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(path))?;
    // `mode` is filtered by the umask and ignored for an existing file.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> MosquittoOptions {
        MosquittoOptions {
            out_dir: dir.join("mosquitto"),
            bind: "127.0.0.1".into(),
            port: 18883,
            hosts: vec!["gateway.lan".into(), "localhost".into()],
            user: Some("nobody".into()),
        }
    }

    #[test]
    fn acl_gives_the_service_every_jobs_topic_and_devices_their_own() {
        let acl = acl_text();
        let lines: Vec<&str> = acl
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            lines,
            [
                "user iotjobs-local/service",
                "topic readwrite $aws/things/+/jobs/#",
                "pattern readwrite $aws/things/%u/#",
            ]
        );
    }

    #[test]
    fn writes_every_file_with_safe_modes_and_a_matching_config() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::ephemeral().unwrap();
        let files = write(&pki, &opts(tmp.path())).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.conf), 0o644);
        assert_eq!(mode(files.conf.parent().unwrap()), 0o700);
        assert_eq!(
            std::fs::read_to_string(&files.ca).unwrap(),
            pki.ca_cert_pem()
        );
        assert_eq!(std::fs::read_to_string(&files.acl).unwrap(), acl_text());

        let conf = std::fs::read_to_string(&files.conf).unwrap();
        for line in [
            "listener 18883 127.0.0.1".to_string(),
            format!("cafile {}", files.ca.display()),
            format!("certfile {}", files.cert.display()),
            format!("keyfile {}", files.key.display()),
            format!("acl_file {}", files.acl.display()),
            "require_certificate true".into(),
            "use_identity_as_username true".into(),
            "use_username_as_clientid true".into(),
            "allow_anonymous false".into(),
            "set_tcp_nodelay true".into(),
            "user nobody".into(),
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }

        // The broker's certificate names loopback and the extra host, once each.
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(&files.cert).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
                    _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
                },
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["localhost", "127.0.0.1", "::1", "gateway.lan"]);
    }

    #[test]
    fn rewriting_keeps_the_key_private_and_refuses_injected_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::ephemeral().unwrap();
        let o = opts(tmp.path());
        let first = write(&pki, &o).unwrap();
        std::fs::set_permissions(&first.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = write(&pki, &o).unwrap();
        let mode = std::fs::metadata(&again.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let mut bad = o.clone();
        bad.user = Some("root\nallow_anonymous true".into());
        let e = write(&pki, &bad).unwrap_err().to_string();
        assert!(e.contains("user"), "{e}");
        let mut bad = o;
        bad.hosts.push(" spaced".into());
        assert!(matches!(
            write(&pki, &bad),
            Err(MosquittoConfigError::Unsafe { what: "host", .. })
        ));
    }
}
