//! What can go wrong loading, attaching and writing maps, said so an operator can act.
use aya::{EbpfError, maps::MapError, programs::ProgramError};

/// How many lines of the verifier's log an error shows.
const VERIFIER_TAIL: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "this lb was built without its BPF programs (AYA_BUILD_SKIP=1); rebuild with `cargo xtask build`"
    )]
    NoObject,
    #[error(
        "permission denied loading BPF objects: run lb as root (it needs CAP_BPF and CAP_NET_ADMIN)"
    )]
    Privilege,
    #[error("loading the BPF object: {0}")]
    Load(#[source] Box<EbpfError>),
    #[error(
        "the kernel's verifier rejected {program}: {reason}\n--- verifier log (tail) ---\n{tail}"
    )]
    Verifier {
        program: String,
        reason: String,
        tail: String,
    },
    #[error("program {program}: {source}")]
    Program {
        program: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("no interface named {0:?}")]
    UnknownInterface(String),
    #[error("attaching {program} to {interface} ({mode}): {source}")]
    Attach {
        program: String,
        interface: String,
        mode: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error("map {name}: mapping it into memory: {source}")]
    Mmap {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("map {0} is missing from the BPF object")]
    MissingMap(&'static str),
    #[error("{0}")]
    Limit(String),
}

pub type Result<T, E = DataplaneError> = std::result::Result<T, E>;

pub(super) fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        name,
        source: Box::new(source),
    }
}

pub(super) fn is_eperm(e: &EbpfError) -> bool {
    let text = format!("{e:?}");
    text.contains("PermissionDenied") || text.contains("Operation not permitted")
}

pub(super) fn load_error(program: &str, e: ProgramError) -> DataplaneError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            // The verifier's last words before its summary say why: the block of message
            // lines after the last instruction line (those start with a digit or ';').
            let summary = |l: &&str| {
                ["processed ", "verification time", "stack depth"]
                    .iter()
                    .any(|p| l.starts_with(p))
            };
            let is_insn = |l: &&str| l.starts_with(|c: char| c.is_ascii_digit() || c == ';');
            let body: Vec<&str> = lines.iter().copied().filter(|l| !summary(l)).collect();
            let last_insn = body.iter().rposition(is_insn).map_or(0, |i| i + 1);
            let reason = match body[last_insn..].join("; ") {
                r if r.is_empty() => io_error.to_string(),
                r => r,
            };
            let tail = lines[lines.len().saturating_sub(VERIFIER_TAIL)..].join("\n");
            DataplaneError::Verifier {
                program: program.into(),
                reason,
                tail,
            }
        }
        e if format!("{e:?}").contains("PermissionDenied") => DataplaneError::Privilege,
        source => DataplaneError::Program {
            program: program.into(),
            source: Box::new(source),
        },
    }
}
