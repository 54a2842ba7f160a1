//! The store as a request holds it.

use std::sync::{Arc, Mutex, PoisonError};

/// A [`Cache`](super::Cache) clone's spare store handle, shared with the requests that
/// clone serves. The lock makes it sendable for stores that are `Send` but not `Sync`;
/// it is taken only to clone the handle.
pub(crate) type Spare<St> = Arc<Mutex<St>>;

/// A request's way to its store, for whatever follows the first lookup (a variant's
/// lookup, a second look, a write): the spare of the `Cache` clone it came through, from
/// which a handle of its own is cloned when it needs one.
///
/// The first lookup is sent on the `Cache`'s own handle, readied in `poll_ready`, so a hit
/// clones no store: the one reference count it takes is on this `Cache` clone's spare,
/// which the requests of other clones (other tasks, other cores) do not touch. Cloning a
/// store bumps counts that every clone shares (a `Verify`'s keyring, a `Tiered`'s
/// tiers), and on two cores those lines bounce between them on every hit.
pub(crate) struct StoreHandle<St> {
    spare: Spare<St>,
    own: Option<St>,
}

impl<St: Clone> StoreHandle<St> {
    pub(crate) fn new(spare: Spare<St>) -> Self {
        Self { spare, own: None }
    }

    /// This request's own handle, cloned from the spare the first time.
    pub(crate) fn own(&mut self) -> &mut St {
        let spare = &self.spare;
        self.own.get_or_insert_with(|| clone_out(spare))
    }

    /// A handle to hand on (to a write that runs on its own).
    pub(crate) fn cloned(&self) -> St {
        match &self.own {
            Some(own) => own.clone(),
            None => clone_out(&self.spare),
        }
    }
}

fn clone_out<St: Clone>(spare: &Spare<St>) -> St {
    // Cloning a handle cannot leave it half-changed: a poisoned lock still holds a good one.
    spare.lock().unwrap_or_else(PoisonError::into_inner).clone()
}
