//! The two expositions a scrape may get: OpenMetrics (what [`super::render`] writes) and the
//! Prometheus text format 0.0.4 made from it, and which one a scraper's `Accept` asks for.
/// The content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two expositions a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The Prometheus text format 0.0.4: what scrapers get that do not ask for OpenMetrics.
    Text,
}

impl Format {
    /// What an `Accept` header prefers: OpenMetrics where it is acceptable (q > 0) and
    /// weighted at least as high as the text format, the text format otherwise.
    pub fn negotiate(accept: &str) -> Format {
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The text format 0.0.4 of an OpenMetrics exposition that [`render`] wrote. The samples are
/// the same in both; the metadata differs: a counter's family is named with its `_total`
/// suffix, an info metric is a gauge named with its `_info` suffix, 0.0.4 has no `# UNIT`
/// and no `# EOF`, and its `# HELP` escapes only backslashes and line feeds.
pub fn to_text(openmetrics: &str) -> String {
    let mut kinds = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            kinds.insert(name.to_string(), kind.to_string());
        }
    }
    let renamed = |name: &str| -> (String, String) {
        match kinds.get(name).map(String::as_str) {
            Some("counter") => (format!("{name}_total"), "counter".into()),
            Some("info") => (format!("{name}_info"), "gauge".into()),
            Some("stateset") | Some("gaugehistogram") | Some("unknown") => {
                (name.to_string(), "untyped".into())
            }
            Some(kind) => (name.to_string(), kind.to_string()),
            None => (name.to_string(), "untyped".into()),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_once(' ').map_or(rest, |(n, _)| n);
            let (name, kind) = renamed(name);
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // OpenMetrics escapes `"` as well; 0.0.4 reads `\"` as a backslash and a quote.
            let help = help.replace("\\\"", "\"");
            out.push_str(&format!("# HELP {} {help}\n", renamed(name).0));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
