//! The store as a request holds it.

use std::sync::{Arc, Mutex, PoisonError};

/// A spare store handle that a [`Cache`](super::Cache) hands to its requests (shared by
/// its clones, or a long-lived clone's own: see `PerClone`). The lock makes it sendable
/// for stores that are `Send` but not `Sync`; it is taken only to clone the handle.
pub(crate) type Spare<St> = Arc<Mutex<St>>;

/// A request's way to its store, for whatever follows the first lookup (a variant's
/// lookup, a second look, a write): a spare, from which a handle of its own is cloned when
/// it needs one.
///
/// The first lookup goes out on the `Cache`'s own handle when `poll_ready` found it ready,
/// so a hit clones no store: it takes one reference count, on the spare. Cloning a store
/// instead takes every count the store's parts hold (a `Verify`'s keyring, a `Tiered`'s
/// tiers), on lines that every clone writes.
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
