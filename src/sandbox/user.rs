//! Which user a step runs as. The policy ([`decide`]) is pure; the account look-ups
//! (passwd, group list) happen here in the parent, before fork, because the child may
//! only make async-signal-safe calls.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{getgrouplist, Gid, Uid, User};

use super::error::SandboxError;

/// An account a step can run as, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Who runs a step, as decided by [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// Keep the daemon's identity (no switch at all).
    Daemon,
    /// Switch to this user (the daemon is root).
    User(String),
}

/// The user a step runs as, with what the child needs to switch to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub identity: Identity,
    /// Supplementary groups (initgroups semantics); only used when `switch` is set.
    pub groups: Vec<libc::gid_t>,
    pub switch: bool,
}

impl Identity {
    /// The daemon's effective identity. An account without a passwd entry (possible in
    /// containers) is named by its uid and gets `/` as home.
    pub fn current() -> Identity {
        let uid = Uid::effective();
        match User::from_uid(uid) {
            Ok(Some(u)) => Identity {
                name: u.name,
                uid: uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            },
            _ => Identity {
                name: uid.as_raw().to_string(),
                uid: uid.as_raw(),
                gid: Gid::effective().as_raw(),
                home: PathBuf::from("/"),
            },
        }
    }
}

/// The users a step may name when `allowed_users` is empty.
fn effective_allowed(daemon: &Identity, allowed_users: &[String]) -> Vec<String> {
    if allowed_users.is_empty() {
        let mut v = vec!["root".to_string()];
        if daemon.name != "root" {
            v.push(daemon.name.clone());
        }
        v
    } else {
        allowed_users.to_vec()
    }
}

/// Decides who runs a step.
///
/// `allowed_users` is checked in every mode, also when the handler switches user itself
/// (`handlers_switch_user`), because the handler then acts on `runAsUser` with the
/// daemon's privileges. runCommand always switches natively: a command cannot switch
/// itself, and sudo is never used.
pub(crate) fn decide(
    daemon: &Identity,
    allowed_users: &[String],
    handlers_switch_user: bool,
    is_handler: bool,
    requested: Option<&str>,
) -> Result<RunAs, SandboxError> {
    let user = match requested {
        None | Some("") => return Ok(RunAs::Daemon),
        Some(u) => u,
    };
    let allowed = effective_allowed(daemon, allowed_users);
    if !allowed.iter().any(|a| a == user) {
        return Err(SandboxError::UserNotAllowed {
            user: user.to_string(),
            allowed: allowed.join(", "),
        });
    }
    if (handlers_switch_user && is_handler) || user == daemon.name {
        return Ok(RunAs::Daemon);
    }
    if daemon.uid != 0 {
        return Err(SandboxError::CannotSwitchUser {
            user: user.to_string(),
            daemon_user: daemon.name.clone(),
        });
    }
    Ok(RunAs::User(user.to_string()))
}

/// Resolves the decision to uid, gid and supplementary groups.
pub(crate) fn lookup(daemon: &Identity, run_as: &RunAs) -> Result<Target, SandboxError> {
    let name = match run_as {
        RunAs::Daemon => {
            return Ok(Target {
                identity: daemon.clone(),
                groups: Vec::new(),
                switch: false,
            })
        }
        RunAs::User(name) => name,
    };
    let lookup_err = |reason: String| SandboxError::UserLookup {
        user: name.clone(),
        reason,
    };
    let user = User::from_name(name)
        .map_err(|e| lookup_err(e.desc().to_string()))?
        .ok_or_else(|| SandboxError::UnknownUser { user: name.clone() })?;
    let cname = CString::new(name.as_str()).map_err(|_| lookup_err("name contains NUL".into()))?;
    let groups = getgrouplist(&cname, user.gid)
        .map_err(|e| lookup_err(format!("reading its groups: {}", e.desc())))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    Ok(Target {
        identity: Identity {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        },
        groups,
        switch: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(name: &str, uid: u32) -> Identity {
        Identity {
            name: name.into(),
            uid,
            gid: uid,
            home: PathBuf::from("/"),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_user_runs_as_daemon() {
        let d = ident("root", 0);
        assert_eq!(decide(&d, &[], false, true, None), Ok(RunAs::Daemon));
        assert_eq!(decide(&d, &[], false, true, Some("")), Ok(RunAs::Daemon));
    }

    #[test]
    fn default_allow_list_is_root_and_daemon_user() {
        let d = ident("iotjobs", 990);
        assert_eq!(
            decide(&d, &[], false, true, Some("iotjobs")),
            Ok(RunAs::Daemon)
        );
        let err = decide(&d, &[], false, true, Some("alice")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "runAsUser 'alice' is not allowed (allowed users: root, iotjobs); add it to jobs.allowed_users"
        );
        let d = ident("root", 0);
        assert!(matches!(
            decide(&d, &[], false, true, Some("alice")),
            Err(SandboxError::UserNotAllowed { .. })
        ));
        assert_eq!(
            decide(&d, &[], false, true, Some("root")),
            Ok(RunAs::Daemon)
        );
    }

    #[test]
    fn root_switches_natively_to_allowed_user() {
        let d = ident("root", 0);
        let allowed = strings(&["alice"]);
        assert_eq!(
            decide(&d, &allowed, false, true, Some("alice")),
            Ok(RunAs::User("alice".into()))
        );
        // An explicit list replaces the default: root itself is then not allowed.
        assert!(decide(&d, &allowed, false, true, Some("root")).is_err());
    }

    #[test]
    fn aws_mode_keeps_daemon_user_for_handlers_but_not_commands() {
        let d = ident("root", 0);
        let allowed = strings(&["alice"]);
        assert_eq!(
            decide(&d, &allowed, true, true, Some("alice")),
            Ok(RunAs::Daemon)
        );
        assert_eq!(
            decide(&d, &allowed, true, false, Some("alice")),
            Ok(RunAs::User("alice".into()))
        );
        // The allow-list still applies in AWS mode.
        assert!(decide(&d, &allowed, true, true, Some("bob")).is_err());
    }

    #[test]
    fn non_root_daemon_cannot_switch() {
        let d = ident("iotjobs", 990);
        let allowed = strings(&["alice", "iotjobs"]);
        let err = decide(&d, &allowed, false, true, Some("alice")).unwrap_err();
        assert_eq!(
            err,
            SandboxError::CannotSwitchUser {
                user: "alice".into(),
                daemon_user: "iotjobs".into()
            }
        );
        assert!(err.to_string().contains("not root"));
        assert_eq!(
            decide(&d, &allowed, false, true, Some("iotjobs")),
            Ok(RunAs::Daemon)
        );
        // In AWS mode the handler gets the name and deals with it itself.
        assert_eq!(
            decide(&d, &allowed, true, true, Some("alice")),
            Ok(RunAs::Daemon)
        );
    }

    #[test]
    fn lookup_of_daemon_does_not_switch() {
        let d = Identity::current();
        let t = lookup(&d, &RunAs::Daemon).unwrap();
        assert!(!t.switch);
        assert_eq!(t.identity, d);
    }

    #[test]
    fn lookup_unknown_user_is_a_clear_error() {
        let d = Identity::current();
        let err = lookup(&d, &RunAs::User("no-such-user-iotjobs-x".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "runAsUser 'no-such-user-iotjobs-x' does not exist on this device"
        );
    }
}
