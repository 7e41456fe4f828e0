//! The destination's lease (`FORMAT.md` 15.5): one object, `lease.json`, created with a
//! conditional put, that names the one backup or shipper allowed to write the destination.
//!
//! The lease keeps a second shipper out; it is not what keeps two writers from interleaving.
//! That is the catalog's conditional put: each catalog is created under the next sequence
//! number only if no catalog has it yet, so of two writers that both think they hold the
//! lease (one paused past its expiry, say), the second to publish fails with
//! [`ArchiveError::Conflict`] and stops.

use std::time::Duration;

use super::error::{ArchiveError, Result};
use super::format::{decode_object, encode_object, Lease, LEASE_FORMAT, LEASE_KEY, OBJECT_VERSION};
use super::now_ms;
use super::store::Store;

/// A lease this process holds.
#[derive(Debug)]
pub(crate) struct LeaseHolder {
    run: String,
    duration_ms: u64,
    renewed_ms: u64,
}

/// This machine's host name, or an empty string.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// Whether process `pid` exists on this machine (a process we may not signal exists too).
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

impl LeaseHolder {
    fn lease(&self, now: u64) -> Lease {
        Lease {
            format: LEASE_FORMAT.to_string(),
            version: OBJECT_VERSION,
            owner: self.run.clone(),
            host: host_name(),
            pid: std::process::id(),
            renewed_ms: now,
            expires_ms: now.saturating_add(self.duration_ms),
        }
    }

    /// Takes the lease of `store` for run `run`. A lease held by another run is taken over only
    /// if it has expired, or if its holder was a process of this host that no longer exists.
    ///
    /// # Errors
    /// [`ArchiveError::Leased`] if another shipper holds it; [`ArchiveError::Store`];
    /// [`ArchiveError::UnsupportedVersion`] for a lease of a newer format.
    pub(crate) fn acquire(store: &Store, run: &str, duration: Duration) -> Result<LeaseHolder> {
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut holder = LeaseHolder { run: run.to_string(), duration_ms, renewed_ms: 0 };
        for _ in 0..4 {
            let now = now_ms();
            if store.create(LEASE_KEY, encode_object(&holder.lease(now))?)? {
                holder.renewed_ms = now;
                return Ok(holder);
            }
            let Some(bytes) = store.get(LEASE_KEY)? else { continue };
            let stale = match decode_object::<Lease>(LEASE_KEY, &bytes, LEASE_FORMAT) {
                Ok(lease) if lease.owner == run => true,
                Ok(lease) => {
                    let dead = lease.host == host_name() && !process_exists(lease.pid);
                    if now <= lease.expires_ms && !dead {
                        return Err(ArchiveError::Leased {
                            owner: lease.owner,
                            host: lease.host,
                            pid: lease.pid,
                            expires_ms: lease.expires_ms,
                        });
                    }
                    true
                }
                // A lease this build cannot read may be a newer shipper's: keep out.
                Err(err @ ArchiveError::UnsupportedVersion { .. }) => return Err(err),
                // A damaged lease protects nothing; the catalog's conditional put still does.
                Err(_) => true,
            };
            if stale {
                store.delete(LEASE_KEY)?;
            }
        }
        Err(ArchiveError::Conflict {
            key: LEASE_KEY.to_string(),
            reason: "the lease kept changing while this shipper tried to take it".to_string(),
        })
    }

    /// Renews the lease if a third of its duration has passed since it was last renewed.
    ///
    /// # Errors
    /// [`ArchiveError::Conflict`] if the lease is gone or another run holds it now (this one
    /// was paused past its expiry and taken over); [`ArchiveError::Store`].
    pub(crate) fn renew(&mut self, store: &Store) -> Result<()> {
        let now = now_ms();
        if now.saturating_sub(self.renewed_ms) < self.duration_ms / 3 {
            return Ok(());
        }
        let holder = store
            .get(LEASE_KEY)?
            .and_then(|bytes| decode_object::<Lease>(LEASE_KEY, &bytes, LEASE_FORMAT).ok());
        match holder {
            Some(lease) if lease.owner == self.run => {
                store.put(LEASE_KEY, encode_object(&self.lease(now))?)?;
                self.renewed_ms = now;
                Ok(())
            }
            other => Err(ArchiveError::Conflict {
                key: LEASE_KEY.to_string(),
                reason: match other {
                    Some(lease) => format!("the lease was taken over by run {}", lease.owner),
                    None => "the lease was removed while this shipper held it".to_string(),
                },
            }),
        }
    }

    /// Gives the lease up, if this run still holds it.
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub(crate) fn release(&self, store: &Store) -> Result<()> {
        let holder = store
            .get(LEASE_KEY)?
            .and_then(|bytes| decode_object::<Lease>(LEASE_KEY, &bytes, LEASE_FORMAT).ok());
        if holder.is_some_and(|lease| lease.owner == self.run) {
            store.delete(LEASE_KEY)?;
        }
        Ok(())
    }
}
