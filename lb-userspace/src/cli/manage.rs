//! `lb vip` and `lb backend`: changes and listings through the running agent's API.
use super::*;

/// After a change the agent answers with its status: show the VIP concerned.
fn print_change(json: bool, body: &str, vip: &str) -> anyhow::Result<()> {
    print_as::<status::Status>(json, body, |s| {
        s.vips
            .iter()
            .filter(|v| v.name == vip)
            .map(status::render_vip)
            .collect::<String>()
    })
}

pub(super) fn vip(cmd: VipCommand, socket: &std::path::Path) -> anyhow::Result<()> {
    match cmd {
        VipCommand::List { json } => {
            print_as::<Vec<status::VipStatus>>(json, &api::get(socket, "/v1/vips")?, |vs| {
                vs.iter().map(status::render_vip).collect()
            })
        }
        VipCommand::Add {
            name,
            address,
            protocol,
            health,
            ring_size,
            forwarding,
            backends,
            json,
        } => {
            let backends = backends
                .iter()
                .map(|b| {
                    let (a, w) = b
                        .split_once('=')
                        .map_or((b.as_str(), None), |(a, w)| (a, Some(w)));
                    let address = a.parse().map_err(|_| {
                        anyhow::anyhow!("--backend {b}: {a:?} is not an IP address")
                    })?;
                    let weight = w
                        .map(|w| {
                            w.parse().map_err(|_| {
                                anyhow::anyhow!("--backend {b}: {w:?} is not a weight")
                            })
                        })
                        .transpose()?;
                    Ok(BackendSpec { address, weight })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let spec = VipSpec {
                name: name.clone(),
                address,
                protocol: Some(protocol),
                ring_size,
                health,
                forwarding,
                backends,
            };
            let body = api::request(
                socket,
                "POST",
                "/v1/vips",
                Some(&serde_json::to_string(&spec)?),
            )?;
            print_change(json, &body, &name)
        }
        VipCommand::Del { name, json } => {
            let body = api::request(socket, "DELETE", &format!("/v1/vips/{name}"), None)?;
            print_as::<status::Status>(json, &body, |_| format!("VIP {name} deleted\n"))
        }
    }
}

pub(super) fn backend(cmd: BackendCommand, socket: &std::path::Path) -> anyhow::Result<()> {
    let (vip, json, body) = match cmd {
        BackendCommand::List { vip, json } => {
            let body = api::get(socket, &format!("/v1/vips/{vip}/backends"))?;
            return print_as::<Vec<status::BackendStatus>>(json, &body, |bs| {
                status::render_backends(bs)
            });
        }
        BackendCommand::Add {
            vip,
            address,
            weight,
            json,
        } => {
            let spec = serde_json::to_string(&BackendSpec { address, weight })?;
            let body = api::request(
                socket,
                "POST",
                &format!("/v1/vips/{vip}/backends"),
                Some(&spec),
            )?;
            (vip, json, body)
        }
        BackendCommand::Del { vip, address, json } => {
            let body = api::request(
                socket,
                "DELETE",
                &format!("/v1/vips/{vip}/backends/{address}"),
                None,
            )?;
            (vip, json, body)
        }
        BackendCommand::Drain { vip, address, json } => {
            let body = api::request(
                socket,
                "POST",
                &format!("/v1/vips/{vip}/backends/{address}/drain"),
                None,
            )?;
            (vip, json, body)
        }
        BackendCommand::Set {
            vip,
            address,
            weight,
            json,
        } => {
            let body = serde_json::to_string(&api::WeightSpec { weight })?;
            let body = api::request(
                socket,
                "PUT",
                &format!("/v1/vips/{vip}/backends/{address}/weight"),
                Some(&body),
            )?;
            (vip, json, body)
        }
        BackendCommand::Undrain { vip, address, json } => {
            let body = api::request(
                socket,
                "POST",
                &format!("/v1/vips/{vip}/backends/{address}/undrain"),
                None,
            )?;
            (vip, json, body)
        }
    };
    print_change(json, &body, &vip)
}
