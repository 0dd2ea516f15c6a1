//! Reading a Prometheus / OpenMetrics text exposition.

use std::collections::BTreeMap;

/// One sample of a Prometheus / OpenMetrics text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (`name{label="v",...} value`); comments and
/// `# EOF` are skipped. Panics on a line it cannot read: the endpoint must serve
/// well-formed text.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("metric line without a value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("metric value is not a number: {line:?}"));
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let mut labels = BTreeMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("label without a value: {line:?}"));
                    labels.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The sum of every sample named `name` (over all label sets); `None` when absent.
pub fn metric_sum(samples: &[Sample], name: &str) -> Option<f64> {
    metric_sum_where(samples, name, &[])
}

/// The sum of the samples named `name` whose labels include every `(label, value)`
/// of `labels`; `None` when none matches.
pub fn metric_sum_where(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// The metrics a process serves on `http_port` (empty when it does not answer).
pub async fn scrape(http_port: u16) -> Vec<Sample> {
    match crate::http::http(http_port, "GET", "/metrics", "").await {
        Ok((200, body)) => parse_metrics(&body),
        _ => Vec::new(),
    }
}

/// The mean of histogram `name` (`_sum` / `_count`) over the samples with
/// `labels`, in milliseconds; NaN when it has no observations.
pub fn mean_ms(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let part = |suffix: &str| metric_sum_where(samples, &format!("{name}_{suffix}"), labels);
    match (part("sum"), part("count")) {
        (Some(sum), Some(count)) if count > 0.0 => sum * 1e3 / count,
        _ => f64::NAN,
    }
}
