//! Which context ids each child stream may claim.
//!
//! Every id in the tree is handed out by the master, in blocks, and each
//! block travels down one path, hop by hop (`ALLOCATE_ID` is answered by the
//! parent, which asks its own parent). Each hop records which child stream
//! a block (or a single id, for a child it started itself) went to. An
//! `ADD_ROUTE` from a child stream is honoured only for an id granted to
//! that stream, so a child can never claim the master, a parent, a sibling,
//! or an id nobody allocated.

use std::collections::{BTreeMap, HashMap};

/// Blocks (each `ID_BLOCK` ids) the master grants one child stream's
/// subtree: 64 000 contexts, more than any real tree under one child needs,
/// few enough to bound the routes a hostile subtree can announce (~23 MB).
pub(crate) const MAX_BLOCKS_PER_STREAM: usize = 64;
/// Blocks a hop other than the master grants one child stream: a fraction
/// of what the hop itself may hold, so one child can't starve its siblings.
pub(crate) const MAX_BLOCKS_PER_CHILD: usize = 16;

#[derive(Default)]
pub(crate) struct Grants {
    /// start → (end, child stream's context id); ranges never overlap.
    ranges: BTreeMap<u32, (u32, u32)>,
    blocks: HashMap<u32, usize>,
}

impl Grants {
    /// Count and record ids `[start, end)` for the subtree behind `stream`.
    pub(crate) fn grant(&mut self, start: u32, end: u32, stream: u32) {
        *self.blocks.entry(stream).or_default() += 1;
        self.record(start, end, stream);
    }

    /// Count a request of `stream` against `cap` before it is answered;
    /// `false` (nothing counted) when the stream is at its cap.
    pub(crate) fn reserve(&mut self, stream: u32, cap: usize) -> bool {
        let n = self.blocks.entry(stream).or_default();
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    /// A reserved request was refused: uncount it.
    pub(crate) fn release(&mut self, stream: u32) {
        if let Some(n) = self.blocks.get_mut(&stream) {
            *n = n.saturating_sub(1);
        }
    }

    /// Record that ids `[start, end)` belong to the subtree behind `stream`,
    /// for a request already counted by [`Grants::reserve`].
    pub(crate) fn record(&mut self, start: u32, end: u32, stream: u32) {
        if start < end {
            self.ranges.insert(start, (end, stream));
        }
    }

    /// The child stream `id` was granted to, if any.
    pub(crate) fn owner(&self, id: u32) -> Option<u32> {
        let (_, &(end, stream)) = self.ranges.range(..=id).next_back()?;
        (id < end).then_some(stream)
    }

    /// How many grants `stream` holds.
    #[cfg(test)]
    fn count(&self, stream: u32) -> usize {
        self.blocks.get(&stream).copied().unwrap_or(0)
    }

    /// Drop every grant of a lost stream (its ids are never handed out again).
    pub(crate) fn forget(&mut self, stream: u32) {
        self.ranges.retain(|_, (_, s)| *s != stream);
        self.blocks.remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_exact_at_block_edges() {
        let mut g = Grants::default();
        g.grant(1000, 2000, 5);
        g.grant(7, 8, 7);
        assert_eq!(g.owner(999), None);
        assert_eq!(g.owner(1000), Some(5));
        assert_eq!(g.owner(1999), Some(5));
        assert_eq!(g.owner(2000), None);
        assert_eq!(g.owner(7), Some(7));
        assert_eq!(g.owner(0), None);
        assert_eq!(g.count(5), 1);
        g.forget(5);
        assert_eq!(g.owner(1500), None);
        assert_eq!(g.count(5), 0);
    }
}
