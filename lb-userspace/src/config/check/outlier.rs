//! `[vip.outlier]`: passive health, into an [`Outlier`].
use std::time::Duration;

use toml::Spanned;

use crate::config::{raw::*, *};

/// `[vip.outlier]`, field by field; TCP VIPs only (its signal is the clients' repeated SYNs).
pub(in crate::config) fn outlier(
    cx: &Ctx,
    raw: Spanned<RawOutlier>,
    protocol: Protocol,
) -> Result<Outlier, ConfigError> {
    let span = raw.span();
    if protocol != Protocol::Tcp {
        return Err(cx.err(
            span,
            "vip.outlier",
            "passive health reads the clients' repeated SYNs: TCP VIPs only",
        ));
    }
    let raw = raw.into_inner();
    let mut o = Outlier::default();
    let duration = |d: Option<Spanned<String>>, field: &str, slot: &mut Duration| {
        if let Some(d) = d {
            *slot = parse_duration(d.get_ref())
                .filter(|t| !t.is_zero() && *t <= Duration::from_secs(86_400))
                .ok_or_else(|| {
                    cx.err(
                        d.span(),
                        field,
                        format!(
                            "{:?}: a duration from 1ms to 24h is expected (e.g. 2s, 30s, 5m)",
                            d.get_ref()
                        ),
                    )
                })?;
        }
        Ok::<_, ConfigError>(())
    };
    duration(raw.interval, "vip.outlier.interval", &mut o.interval)?;
    duration(
        raw.base_ejection_time,
        "vip.outlier.base_ejection_time",
        &mut o.base_ejection_time,
    )?;
    duration(
        raw.max_ejection_time,
        "vip.outlier.max_ejection_time",
        &mut o.max_ejection_time,
    )?;
    let number = |n: Option<Spanned<i64>>, field: &str, lo: i64, hi: i64, slot: &mut u32| {
        if let Some(n) = n {
            let v = *n.get_ref();
            if !(lo..=hi).contains(&v) {
                return Err(cx.err(n.span(), field, format!("{v}: must be from {lo} to {hi}")));
            }
            *slot = v as u32;
        }
        Ok(())
    };
    number(
        raw.retry_percent,
        "vip.outlier.retry_percent",
        1,
        100,
        &mut o.retry_percent,
    )?;
    number(
        raw.min_flows,
        "vip.outlier.min_flows",
        1,
        1_000_000,
        &mut o.min_flows,
    )?;
    number(
        raw.max_ejection_percent,
        "vip.outlier.max_ejection_percent",
        1,
        100,
        &mut o.max_ejection_percent,
    )?;
    if o.max_ejection_time < o.base_ejection_time {
        return Err(cx.err(
            span,
            "vip.outlier.max_ejection_time",
            format!(
                "{:?} is shorter than base_ejection_time ({:?})",
                o.max_ejection_time, o.base_ejection_time
            ),
        ));
    }
    Ok(o)
}
