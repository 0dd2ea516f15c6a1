//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one of the
//! operator's replicas reconciles. The holder renews the lease every few
//! seconds; another replica takes it once it has not been renewed for its
//! duration. Every write carries the lease's resource version, so two replicas
//! racing for it cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the lease.
    pub duration: Duration,
    /// How often the holder renews (well under `duration`).
    pub renew_every: Duration,
}

#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let seconds = spec.lease_duration_seconds.unwrap_or(15);
    renewed
        .0
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .map_or(true, |until| until < now)
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.duration.as_secs()).unwrap_or(15),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt: takes the lease if it is free or expired, renews it if ours.
    /// `Ok(true)` when this replica holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let name = &self.config.name;
        let Some(mut lease) = self.api.get_opt(name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !ours && !free && !expired(&spec, now) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, transitions, acquired));
        // Carries the resource version read above: a concurrent writer wins.
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease. `false` if cancelled first.
    pub async fn acquire(&self, cancel: &CancellationToken) -> bool {
        let mut logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "leader lease acquired");
                    return true;
                }
                Ok(false) if !logged => {
                    tracing::info!(lease = %self.config.name, "another replica leads; standing by");
                    logged = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(self.config.renew_every) => {}
            }
        }
    }

    /// Renews the lease until `cancel` fires (`true`: the caller stops its work,
    /// then [`Elector::release`]s the lease so that a standby takes over at once)
    /// or until it could not be renewed for its duration (`false`: this replica
    /// must stop reconciling now).
    pub async fn hold(&self, cancel: &CancellationToken) -> bool {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return true,
                () = tokio::time::sleep(self.config.renew_every) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.config.name, "leader lease taken by another replica");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the leader lease");
                    // Give up one renewal period before the lease can expire, so
                    // that this replica has stopped before a standby may take over.
                    let deadline = self.config.duration.saturating_sub(self.config.renew_every);
                    if last_renewed.elapsed() >= deadline {
                        tracing::error!("leader lease could not be renewed in time; stepping down");
                        return false;
                    }
                }
            }
        }
    }

    /// Gives the lease up (best effort).
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.name, "leader lease released"),
            Err(e) => tracing::warn!(error = %e, "could not release the leader lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let spec = LeaseSpec {
            renew_time: Some(MicroTime(t0)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec, t0 + SignedDuration::from_secs(14)));
        assert!(expired(&spec, t0 + SignedDuration::from_secs(16)));
        assert!(expired(&LeaseSpec::default(), t0), "never renewed");
    }
}
