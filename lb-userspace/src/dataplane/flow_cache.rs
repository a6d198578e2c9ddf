//! The flow cache ([`lb_common::flow_cache`]) from the agent's side: it starts empty at every
//! load, and is wiped after the agent forgets flows, once no program still runs that may have
//! read them.
use std::path::Path;

use aya::maps::MapData;
use lb_common::{FLOW_CACHE_ENTRIES, FlowCacheEntry, map_names};

use super::{
    Dataplane, DataplaneError, Result, error::map_err, grace::wait_grace, mmap::FlowCache,
};

/// Unpins a pinned flow cache of another layout (an older or newer release's): the load makes
/// one of this layout, which starts empty as every load's does.
pub(super) fn drop_resized(maps: &Path) -> Result<()> {
    let name = map_names::FLOW_CACHE;
    let path = maps.join(name);
    let Ok(data) = MapData::from_pin(&path) else {
        return Ok(());
    };
    let info = data.info().map_err(map_err(name))?;
    if info.value_size() != size_of::<FlowCacheEntry>() as u32
        || info.max_entries() != FLOW_CACHE_ENTRIES
    {
        std::fs::remove_file(&path)
            .map_err(|e| DataplaneError::Limit(format!("removing {}: {e}", path.display())))?;
        tracing::info!(map = name, "flow cache of another layout made anew");
    }
    Ok(())
}

/// The flows the pinned flow cache at `path` answers for in the current epoch (about a
/// second): where this stays near [`FLOW_CACHE_ENTRIES`], more flows are busy than it holds.
/// 0 where no cache is pinned (an older release's maps).
pub fn count_cached(path: &Path) -> Result<u64> {
    let name = map_names::FLOW_CACHE;
    let Ok(data) = MapData::from_pin(path) else {
        return Ok(0);
    };
    let cache =
        FlowCache::of(&data, false).map_err(|source| DataplaneError::Mmap { name, source })?;
    Ok(cache.current(super::coarse_now()))
}

impl Dataplane {
    /// Empties the flow cache: each flow's next packet reads the table.
    pub(super) fn wipe_flow_cache(&mut self) -> Result<()> {
        let name = map_names::FLOW_CACHE;
        let mut cache = FlowCache::new(self.map(name)?)
            .map_err(|source| DataplaneError::Mmap { name, source })?;
        cache.wipe();
        Ok(())
    }

    /// After flows were taken out of the table: waits until every program run that may have
    /// read their entries (and copied them into the cache) has ended, then empties the cache.
    pub(super) fn forget_cached_flows(&mut self) -> Result<()> {
        wait_grace()?;
        self.wipe_flow_cache()
    }
}
