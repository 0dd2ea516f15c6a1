//! Services (one per role; the data nodes' is headless, for their stable pod
//! names) and PodDisruptionBudgets (one per role with two pods or more).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Role, child_name, component, meta, selector_labels};
use crate::validate::Cluster;

pub(super) fn service(c: &Cluster, role: Role, owner: &OwnerReference) -> Service {
    let port = |name: &str, p: i32| ServicePort {
        name: Some(name.to_owned()),
        port: p,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Service {
        metadata: meta(c, child_name(&c.name, role), Some(role), owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&c.name, role)),
            ports: Some(vec![
                port("grpc", role.grpc_port().into()),
                port("http", role.http_port().into()),
            ]),
            cluster_ip: (role == Role::DataNode).then(|| "None".to_owned()),
            // Data nodes are found by the coordinator through etcd, not through
            // this Service: list them before they are ready, too.
            publish_not_ready_addresses: (role == Role::DataNode).then_some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// One budget per role with two pods or more (at most one of them down at a
/// time, voluntarily), and the names of the budgets that roles under two pods
/// should no longer have (a budget over one pod would block node drains).
pub(super) fn disruption_budgets(
    c: &Cluster,
    owner: &OwnerReference,
) -> (Vec<PodDisruptionBudget>, Vec<String>) {
    let (mut wanted, mut unwanted) = (Vec::new(), Vec::new());
    for role in Role::ALL {
        let name = child_name(&c.name, role);
        if component(c, role).replicas < 2 {
            unwanted.push(name);
            continue;
        }
        wanted.push(disruption_budget(
            meta(c, name, Some(role), owner),
            selector_labels(&c.name, role),
        ));
    }
    (wanted, unwanted)
}

/// At most one pod of those `selector` matches down at a time, voluntarily
/// (evictions, node drains).
pub(super) fn disruption_budget(
    metadata: ObjectMeta,
    selector: std::collections::BTreeMap<String, String>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
