//! State a service's clones share until a clone shows it serves many requests.

/// A value (a reference-counted handle) that a service hands to each request's future,
/// shared by every clone of the service until a clone serves its second request; from
/// then on that clone hands out a copy of its own.
///
/// Handing out the shared value takes a count on a cache line every clone writes: on a
/// clone kept per task or connection, serving from several cores, those lines bounce
/// between the cores on every request. A copy of its own keeps a long-lived clone's counts
/// to itself. A clone made for one request (as `oneshot` and hyper's adapters make them)
/// never makes the copy, so it costs what sharing costs.
#[derive(Debug)]
pub(crate) struct PerClone<T> {
    shared: T,
    own: Option<T>,
    used: bool,
}

impl<T: Clone> PerClone<T> {
    pub(crate) fn new(shared: T) -> Self {
        Self {
            shared,
            own: None,
            used: false,
        }
    }

    /// The value every clone shares.
    pub(crate) fn shared(&self) -> &T {
        &self.shared
    }

    /// The value for a request: the shared one on this clone's first request, then a
    /// copy of this clone's own, made once by `own` from the shared one.
    pub(crate) fn get(&mut self, own: impl FnOnce(&T) -> T) -> T {
        if let Some(own) = &self.own {
            return own.clone();
        }
        if !std::mem::replace(&mut self.used, true) {
            return self.shared.clone();
        }
        let made = own(&self.shared);
        self.own = Some(made.clone());
        made
    }
}

impl<T: Clone> Clone for PerClone<T> {
    fn clone(&self) -> Self {
        Self::new(self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_clone_shares_for_its_first_request_and_copies_once_for_the_rest() {
        let mut original = PerClone::new(Arc::new(7));
        let copy = |shared: &Arc<i32>| Arc::new(**shared);
        let first = original.get(copy);
        assert!(Arc::ptr_eq(&first, original.shared()));
        let second = original.get(copy);
        assert!(!Arc::ptr_eq(&second, original.shared()));
        let third = original.get(|_| unreachable!("made once"));
        assert!(Arc::ptr_eq(&second, &third));

        let mut clone = original.clone();
        assert!(Arc::ptr_eq(&clone.get(copy), original.shared()));
        assert!(
            !Arc::ptr_eq(&clone.get(copy), &second),
            "its own, not the original's"
        );
    }
}
