//! Media types of the OCI image spec and Docker's schema 2, and converting a manifest between them.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, uncompressed.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker layer, gzip.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Whether a media type names an index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Why a manifest could not be converted.
#[derive(Debug, thiserror::Error)]
#[error("cannot convert manifest: {0}")]
pub struct ConvertError(String);

/// Rewrites a single-image manifest's media types for Docker (`docker`) or OCI; returns bytes and type.
pub fn convert_manifest(bytes: &[u8], docker: bool) -> Result<(Vec<u8>, String), ConvertError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ConvertError(e.to_string()))?;
    let (manifest_type, config_type) =
        if docker { (DOCKER_MANIFEST, DOCKER_CONFIG) } else { (OCI_MANIFEST, OCI_CONFIG) };
    let obj = value.as_object_mut().ok_or_else(|| ConvertError("not a JSON object".into()))?;
    obj.insert("mediaType".into(), manifest_type.into());
    let config =
        obj.get_mut("config").and_then(|c| c.as_object_mut()).ok_or_else(|| ConvertError("no config".into()))?;
    config.insert("mediaType".into(), config_type.into());
    if let Some(layers) = obj.get_mut("layers").and_then(|l| l.as_array_mut()) {
        for layer in layers {
            let Some(layer) = layer.as_object_mut() else { continue };
            let current = layer.get("mediaType").and_then(|m| m.as_str()).unwrap_or(OCI_LAYER_GZIP).to_string();
            layer.insert("mediaType".into(), layer_type(&current, docker).into());
        }
    }
    let out = serde_json::to_vec(&value).map_err(|e| ConvertError(e.to_string()))?;
    Ok((out, manifest_type.to_string()))
}

fn layer_type(current: &str, docker: bool) -> &'static str {
    let zstd = current.ends_with("zstd");
    let gzip = current.ends_with("gzip");
    match (docker, gzip, zstd) {
        (_, _, true) => OCI_LAYER_ZSTD,
        (true, true, _) => DOCKER_LAYER_GZIP,
        (true, false, _) => DOCKER_LAYER,
        (false, true, _) => OCI_LAYER_GZIP,
        (false, false, _) => OCI_LAYER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let oci = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:00","size":1}},"layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"sha256:01","size":2}}]}}"#
        );
        let (docker, t) = convert_manifest(oci.as_bytes(), true).unwrap();
        assert_eq!(t, DOCKER_MANIFEST);
        let v: serde_json::Value = serde_json::from_slice(&docker).unwrap();
        assert_eq!(v["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
        assert_eq!(v["config"]["mediaType"], DOCKER_CONFIG);
        let (back, t) = convert_manifest(&docker, false).unwrap();
        assert_eq!(t, OCI_MANIFEST);
        let v: serde_json::Value = serde_json::from_slice(&back).unwrap();
        assert_eq!(v["layers"][0]["mediaType"], OCI_LAYER_GZIP);
    }
}
