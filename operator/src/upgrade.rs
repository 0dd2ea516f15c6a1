//! Upgrades: a new image (`spec.version` or `spec.image`) rolls through the
//! roles in dependency order, one stage at a time: the coordinators (root and
//! data), then the data and query nodes, then the proxies. A stage gets the new image only
//! once every earlier stage is done: its workload rolled out on the new image
//! and every one of its pods, terminating ones included, runs it. The upgrade is
//! done only when every stage is (the status records the image then, not
//! before). Pure: the controller reads the workloads and pods, this decides.
//!
//! Why this order: the data nodes, query nodes and proxies call the coordinators
//! (and the proxies the query nodes), so the
//! coordinators must understand the newest callers first; the proxy, which
//! clients see, changes last, once everything behind it runs the new version.

use std::collections::BTreeMap;

use crate::build::{Role, SpecName};

/// The stages of an upgrade, in order.
pub const STAGES: [&[Role]; 3] = [
    &[Role::RootCoord, Role::DataCoord],
    &[Role::DataNode, Role::QueryNode],
    &[Role::Proxy],
];

/// A role as it runs now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleNow {
    /// The image of its workload's pod template; `None` while it has no workload.
    pub template_image: Option<String>,
    /// The image of each of its pods, terminating ones included.
    pub pod_images: Vec<String>,
    /// The workload's controller caught up with its template, and every replica
    /// is updated and ready, with no pod of an older template left.
    pub rolled_out: bool,
}

impl RoleNow {
    /// Whether the role still has anything on another image than `image`.
    fn behind(&self, image: &str) -> bool {
        self.template_image.as_deref().is_some_and(|t| t != image)
            || self.pod_images.iter().any(|i| i != image)
    }

    fn runs(&self, image: &str) -> bool {
        self.template_image.as_deref() == Some(image)
            && self.rolled_out
            && self.pod_images.iter().all(|i| i == image)
    }
}

/// The image to apply to each role now, on the way to `target`.
pub fn images(target: &str, now: &BTreeMap<Role, RoleNow>) -> BTreeMap<Role, String> {
    let mut out = BTreeMap::new();
    let mut earlier_done = true;
    for stage in STAGES {
        for role in stage {
            let current = now.get(role).and_then(|r| r.template_image.clone());
            let image = match current {
                // A role that has no workload yet starts on the target.
                Some(current) if !earlier_done => current,
                _ => target.to_owned(),
            };
            out.insert(*role, image);
        }
        earlier_done &= stage.iter().all(|r| {
            now.get(r)
                .is_none_or(|n| n.template_image.is_none() || n.runs(target))
        });
    }
    out
}

/// How far the upgrade to `target` is, or `None` when no role has a template or
/// a pod on another image (a new cluster, or one scaling, is not upgrading).
pub fn progress(target: &str, now: &BTreeMap<Role, RoleNow>) -> Option<String> {
    if !now.values().any(|n| n.behind(target)) {
        return None;
    }
    let mut parts = Vec::new();
    let mut earlier_done = true;
    for stage in STAGES {
        for role in stage {
            let Some(n) = now.get(role).filter(|n| n.template_image.is_some()) else {
                continue;
            };
            let part = if n.runs(target) {
                "done".to_owned()
            } else if !earlier_done {
                "waits".to_owned()
            } else {
                let on = n.pod_images.iter().filter(|i| *i == target).count();
                format!("{on}/{} pods on it", n.pod_images.len())
            };
            parts.push(format!("{} {part}", role.spec_name()));
        }
        earlier_done &= stage.iter().all(|r| {
            now.get(r)
                .is_none_or(|n| n.template_image.is_none() || n.runs(target))
        });
    }
    Some(format!("upgrading to {target}: {}", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "milvus-like/node:0.1.0";
    const NEW: &str = "milvus-like/node:0.2.0";

    fn role(image: &str, pods: &[&str], rolled_out: bool) -> RoleNow {
        RoleNow {
            template_image: Some(image.to_owned()),
            pod_images: pods.iter().map(|p| (*p).to_owned()).collect(),
            rolled_out,
        }
    }

    fn all(image: &str) -> BTreeMap<Role, RoleNow> {
        Role::ALL
            .into_iter()
            .map(|r| (r, role(image, &[image, image], true)))
            .collect()
    }

    #[test]
    fn a_new_cluster_starts_every_role_on_the_target() {
        let images = images(NEW, &BTreeMap::new());
        assert!(images.values().all(|i| i == NEW), "{images:?}");
        assert_eq!(progress(NEW, &BTreeMap::new()), None);
    }

    #[test]
    fn the_coordinators_go_first_and_the_rest_waits() {
        let now = all(OLD);
        let images = images(NEW, &now);
        assert_eq!(images[&Role::RootCoord], NEW);
        assert_eq!(images[&Role::DataCoord], NEW);
        assert_eq!(images[&Role::DataNode], OLD);
        assert_eq!(images[&Role::Proxy], OLD);
        let p = progress(NEW, &now).expect("in progress");
        assert!(p.contains("rootCoord 0/2 pods on it"), "{p}");
        assert!(p.contains("dataNode waits"), "{p}");
    }

    #[test]
    fn a_stage_is_done_only_when_every_pod_runs_the_new_image() {
        let mut now = all(OLD);
        // Template switched and the rollout reported done, but an old pod is
        // still terminating: the data nodes must wait.
        now.insert(Role::RootCoord, role(NEW, &[NEW, NEW], true));
        now.insert(Role::DataCoord, role(NEW, &[NEW, NEW, OLD], true));
        assert_eq!(images(NEW, &now)[&Role::DataNode], OLD);
        // Not rolled out yet (the controller has not caught up).
        now.insert(Role::DataCoord, role(NEW, &[NEW, NEW], false));
        assert_eq!(images(NEW, &now)[&Role::DataNode], OLD);
        now.insert(Role::DataCoord, role(NEW, &[NEW, NEW], true));
        let images = images(NEW, &now);
        assert_eq!(images[&Role::DataNode], NEW);
        assert_eq!(
            images[&Role::Proxy],
            OLD,
            "the proxy waits for the data nodes"
        );
    }

    #[test]
    fn the_proxy_goes_last_and_then_the_upgrade_is_done() {
        let mut now = all(NEW);
        now.insert(Role::Proxy, role(OLD, &[OLD], true));
        assert_eq!(images(NEW, &now)[&Role::Proxy], NEW);
        assert!(progress(NEW, &now).is_some_and(|p| p.contains("proxy 0/1")));
        now.insert(Role::Proxy, role(NEW, &[NEW], true));
        assert_eq!(progress(NEW, &now), None);
    }

    #[test]
    fn a_new_cluster_coming_up_is_not_an_upgrade() {
        let now: BTreeMap<Role, RoleNow> = Role::ALL
            .into_iter()
            .map(|r| (r, role(NEW, &[NEW], false)))
            .collect();
        assert_eq!(progress(NEW, &now), None);
    }

    #[test]
    fn a_role_with_no_pods_is_done_once_its_template_is() {
        let mut now = all(OLD);
        now.insert(Role::RootCoord, role(NEW, &[], true));
        now.insert(Role::DataCoord, role(NEW, &[], true));
        assert_eq!(images(NEW, &now)[&Role::DataNode], NEW);
    }
}
