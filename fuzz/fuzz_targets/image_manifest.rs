//! Manifests, indexes, image configs and references as a registry or a base image might send them:
//! decoding errors, never panics; a parsed reference prints to a string that parses to the same
//! reference; a decoded config encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageIndex, ImageManifest};

fuzz_target!(|data: &[u8]| {
    let _ = ImageManifest::from_reader(data);
    let _ = ImageIndex::from_reader(data);
    let _ = kiln::image::convert_manifest(data, true);
    let _ = kiln::image::convert_manifest(data, false);
    if let Ok(config) = serde_json::from_slice::<kiln::image::ImageConfig>(data) {
        let _ = config.env_pairs();
        let encoded = serde_json::to_vec(&config).expect("a decoded config encodes");
        let again: kiln::image::ImageConfig = serde_json::from_slice(&encoded).expect("and decodes again");
        assert_eq!(serde_json::to_value(&again).ok(), serde_json::to_value(&config).ok());
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(reference) = kiln::image::Reference::parse(text)
    {
        let printed = reference.to_string();
        let again = kiln::image::Reference::parse(&printed).expect("a printed reference parses");
        assert_eq!(again.to_string(), printed, "normalising is idempotent");
    }
});
