//! Seeded random inputs for the property tests of every framer and receive path: the
//! normal suite runs a fixed number of cases from a fixed seed (deterministic, fast);
//! `AVGATE_FUZZ_CASES=1000000 AVGATE_FUZZ_SEED=7 cargo test -p avgate-drivers --lib fuzz`
//! runs as many as you like from any seed.

/// How many cases a property test runs: `AVGATE_FUZZ_CASES`, or `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("AVGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generator for a property test: `AVGATE_FUZZ_SEED`, or a fixed seed.
pub fn rng() -> fastrand::Rng {
    let seed = std::env::var("AVGATE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_a76a7e);
    fastrand::Rng::with_seed(seed)
}

/// Bytes a device might send when something is wrong: random bytes, biased towards the
/// protocol's own `alphabet` (terminators, start bytes, digits) so that framing code is
/// exercised near its edges rather than only on noise.
pub fn garbage(rng: &mut fastrand::Rng, alphabet: &[u8], max_len: usize) -> Vec<u8> {
    let len = rng.usize(0..=max_len);
    (0..len)
        .map(|_| {
            if !alphabet.is_empty() && rng.bool() {
                alphabet[rng.usize(..alphabet.len())]
            } else {
                rng.u8(..)
            }
        })
        .collect()
}

/// `data` cut into random chunks, as TCP may deliver it.
pub fn chunks<'a>(rng: &mut fastrand::Rng, data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.usize(1..=rest.len().min(64));
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::checksum::Checksum;
    use crate::kit::framing::*;

    const MAX: usize = 64;

    /// Feeds garbage then `good` (sealed) `repeat` times; no panic, the buffer never
    /// holds more than `bound`, and `good` comes out at least once.
    fn property(
        mut framer: Framer,
        good: &[u8],
        expect: &[u8],
        alphabet: &[u8],
        repeat: usize,
        bound: usize,
    ) {
        let mut rng = rng();
        for case in 0..cases(300) {
            framer.clear();
            let mut input = garbage(&mut rng, alphabet, 4 * MAX);
            for _ in 0..repeat {
                input.extend_from_slice(good);
            }
            let mut found = false;
            for chunk in chunks(&mut rng, &input) {
                framer.push(chunk);
                while let Some(frame) = framer.next_frame() {
                    found |= frame.as_deref() == Ok(expect);
                }
                assert!(
                    framer.buffered() <= bound,
                    "case {case}: {} bytes held",
                    framer.buffered()
                );
            }
            assert!(found, "case {case}: no resync on {input:?}");
        }
    }

    #[test]
    fn fuzz_lines_resync() {
        let framer = Framer::Delimited(Delimited::new(b"\r\n", true, MAX));
        property(
            framer,
            b"\r\n~01@ROUTE 1,2,3 OK\r\n",
            b"~01@ROUTE 1,2,3 OK",
            b"\r\n~@ ",
            1,
            MAX + 64 + 2,
        );
    }

    #[test]
    fn fuzz_delimiter_bytes_resync() {
        let framer = Framer::Delimited(Delimited::new(b"\0", false, MAX));
        property(
            framer,
            b"\0{\"id\":1}\0",
            b"{\"id\":1}",
            b"\0{}\"",
            1,
            MAX + 64 + 1,
        );
    }

    #[test]
    fn fuzz_blocks_resync() {
        let framer = Framer::Block(Block::new(MAX));
        property(framer, b"\n\nACK\n\n", b"ACK", b"\n\r: ", 1, 2 * MAX + 64);
    }

    #[test]
    fn fuzz_checked_frames_resync() {
        let layout = CheckedLayout {
            start: 0x01,
            header: 7,
            length_at: 5,
            length: LengthField::Hex2,
            checksum: Checksum::Xor,
            checksum_from: 1,
            trailer: b"\r".to_vec(),
        };
        let checked = Checked::new(layout, MAX);
        let good = checked.seal(b"\x0100AB00\x0200C203D60001\x03");
        let expect = good[..good.len() - 2].to_vec();
        // A bogus header may claim up to MAX bytes: enough good frames follow to fill it.
        let repeat = MAX / good.len() + 2;
        property(
            Framer::Checked(checked),
            &good,
            &expect,
            b"\x01\x02\x030A",
            repeat,
            MAX + 64,
        );
        for checksum in [Checksum::Sum8, Checksum::Crc16] {
            let checked = Checked::new(
                CheckedLayout {
                    start: 0xAA,
                    header: 4,
                    length_at: 3,
                    length: LengthField::U8,
                    checksum,
                    checksum_from: 1,
                    trailer: Vec::new(),
                },
                MAX,
            );
            let good = checked.seal(&[0xAA, 0x11, 0x01, 0x00, 0x01]);
            let repeat = MAX / good.len() + 2;
            property(
                Framer::Checked(checked),
                &good,
                &[0xAA, 0x11, 0x01, 0x01, 0x01],
                &[0xAA, 0x01, 0x11],
                repeat,
                MAX + 64,
            );
        }
    }
}
