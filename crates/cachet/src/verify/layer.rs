use tower::Layer;

use super::{Keyring, Verify};

/// A [`Layer`] that signs what goes into a store and verifies what comes out.
#[derive(Clone, Debug)]
#[must_use]
pub struct VerifyLayer {
    keyring: Keyring,
}

impl VerifyLayer {
    /// Signs and verifies with `keyring`.
    pub fn new(keyring: Keyring) -> Self {
        Self { keyring }
    }
}

impl<St> Layer<St> for VerifyLayer {
    type Service = Verify<St>;

    fn layer(&self, inner: St) -> Verify<St> {
        Verify::new(inner, self.keyring.clone())
    }
}
