//! Image vocabulary shared by the pipeline: references, media types, the image config, platforms and
//! layer chain ids. Pure data: no network, no disk.

mod config;
pub mod media;
mod platform;
mod reference;

pub use config::{ContainerConfig, Empty, HealthConfig, History, ImageConfig, RootFs};
pub use media::{ConvertError, convert_manifest};
pub use platform::Platform;
pub use reference::{RefError, Reference};

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

/// The chain id of a layer stack (OCI): ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
/// DiffID(Ln)). The empty stack gets sha256 of the empty string, so it has a key too.
pub fn chain_id(diff_ids: &[Digest]) -> Digest {
    let mut chain: Option<String> = None;
    for diff in diff_ids {
        chain = Some(match chain {
            None => diff.to_string(),
            Some(prev) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{prev} {diff}").as_bytes()))),
        });
    }
    let text = chain.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(b""))));
    text.parse().unwrap_or_else(|_| unreachable!("chain ids are built from valid digests"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        assert_eq!(chain_id(std::slice::from_ref(&a)), a);
        let want = format!("sha256:{}", hex::encode(Sha256::digest(format!("{a} {b}").as_bytes())));
        assert_eq!(chain_id(&[a, b]).to_string(), want);
        assert_ne!(chain_id(&[]).to_string(), "");
    }
}
