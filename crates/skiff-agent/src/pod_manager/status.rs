//! Pure pod-status rules: phase from container states, conditions with stable transition times, terminated states.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::runtime::ContainerInfo;

pub fn to_time(t: SystemTime) -> Time {
    let nanos = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // Kubernetes timestamps have second precision on the wire; keep it so statuses compare stably.
    let secs = i64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

pub fn now() -> Time {
    to_time(SystemTime::now())
}

/// The terminated state of an exited runtime instance.
pub fn terminated(info: &ContainerInfo, container_id: String) -> ContainerStateTerminated {
    let exit_code = info.exit_code.unwrap_or(-1);
    let reason = info.reason.clone().unwrap_or_else(|| if exit_code == 0 { "Completed" } else { "Error" }.to_string());
    ContainerStateTerminated {
        exit_code,
        reason: Some(reason),
        message: info.message.clone(),
        started_at: info.started_at.map(to_time),
        finished_at: info.finished_at.map(to_time),
        container_id: Some(container_id),
        signal: None,
    }
}

/// The pod phase from its container statuses, as the kubelet's `getPhase` decides it (no init containers).
pub fn pod_phase(statuses: &[ContainerStatus], restart_policy: &str) -> &'static str {
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.as_ref();
        if state.and_then(|st| st.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).is_some() {
            // Waiting to restart after having run.
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    let total = statuses.len();
    if total == 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == total {
        return match restart_policy {
            "Never" if succeeded == total => "Succeeded",
            "Never" => "Failed",
            "OnFailure" if succeeded == total => "Succeeded",
            "OnFailure" => "Running",
            _ => "Running",
        };
    }
    "Pending"
}

/// Build a condition, keeping `lastTransitionTime` from `previous` when the status did not change.
pub fn condition(
    previous: &[PodCondition],
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if status { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(last),
        last_probe_time: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStateWaiting};

    fn st(state: ContainerState, last_terminated: bool) -> ContainerStatus {
        ContainerStatus {
            state: Some(state),
            last_state: last_terminated.then(|| ContainerState {
                terminated: Some(ContainerStateTerminated { exit_code: 1, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn running() -> ContainerState {
        ContainerState { running: Some(ContainerStateRunning::default()), ..Default::default() }
    }
    fn waiting() -> ContainerState {
        ContainerState { waiting: Some(ContainerStateWaiting::default()), ..Default::default() }
    }
    fn exited(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated { exit_code: code, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn phases() {
        assert_eq!(pod_phase(&[st(waiting(), false)], "Always"), "Pending");
        assert_eq!(pod_phase(&[st(running(), false), st(waiting(), false)], "Always"), "Pending");
        assert_eq!(pod_phase(&[st(running(), false), st(waiting(), true)], "Always"), "Running");
        assert_eq!(pod_phase(&[st(waiting(), true)], "Always"), "Running");
        assert_eq!(pod_phase(&[st(exited(0), false)], "Never"), "Succeeded");
        assert_eq!(pod_phase(&[st(exited(0), false), st(exited(2), false)], "Never"), "Failed");
        assert_eq!(pod_phase(&[st(exited(0), false)], "OnFailure"), "Succeeded");
        assert_eq!(pod_phase(&[st(exited(1), false)], "OnFailure"), "Running");
        assert_eq!(pod_phase(&[st(running(), false), st(exited(0), false)], "Never"), "Running");
    }

    #[test]
    fn condition_keeps_transition_time() {
        let old = condition(&[], "Ready", true, None, None);
        let mut earlier = old.clone();
        earlier.last_transition_time = Some(to_time(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5)));
        let same = condition(std::slice::from_ref(&earlier), "Ready", true, None, None);
        assert_eq!(same.last_transition_time, earlier.last_transition_time);
        let flipped = condition(&[earlier.clone()], "Ready", false, Some("ContainersNotReady"), None);
        assert_ne!(flipped.last_transition_time, earlier.last_transition_time);
    }
}
