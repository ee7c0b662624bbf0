//! Deterministic ids: UUID-shaped strings for entities, 32-hex strings for messages, all
//! drawn from one seeded RNG so a seed and a call sequence always give the same ids.

use crate::canonical::hex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(super) struct IdSource {
    rng: StdRng,
}

impl IdSource {
    pub(super) fn new(seed: u64) -> IdSource {
        IdSource {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A version-4-shaped UUID: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
    pub(super) fn uuid(&mut self) -> String {
        let mut bytes: [u8; 16] = self.rng.gen();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = hex(&bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// A message id as open messaging shows them: 32 lower-case hex digits.
    pub(super) fn hex32(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.gen();
        hex(&bytes)
    }

    /// `n` decimal digits (phone numbers).
    pub(super) fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.rng.gen_range(0..10u8)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_hex_and_reproducible() {
        let mut a = IdSource::new(7);
        let mut b = IdSource::new(7);
        let id = a.uuid();
        assert_eq!(id, b.uuid());
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        let message = a.hex32();
        assert_eq!(message, b.hex32());
        assert_eq!(message.len(), 32);
        assert!(message.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(IdSource::new(8).uuid(), id);
    }
}
