//! SBOMs from an inventory: SPDX 2.3 JSON and CycloneDX 1.5 JSON, each listing the image, its OS, its
//! runtimes and every package with its package URL and the path where it was found. Both documents are
//! deterministic for an image (no random ids): the document namespace and serial number derive from the
//! image's manifest digest.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::inventory::{Inventory, Package, Runtime, RuntimeKind, purl};

/// SPDX's media type.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// CycloneDX's media type.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// The image an SBOM describes.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Its name (`registry/repo:tag`, or a local name).
    pub name: String,
    /// The manifest digest (`sha256:<hex>`).
    pub digest: String,
    /// When the document is said to be created (RFC 3339, seconds, `Z`): the image's creation time, so the
    /// same image always gets the same document.
    pub created: String,
}

impl Subject {
    fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    /// `pkg:oci/<last path part>@sha256:<hex>?repository_url=<registry/repo>`.
    pub fn purl(&self) -> String {
        let repo = self.name.split('@').next().unwrap_or(&self.name);
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        let last = repo.rsplit('/').next().unwrap_or(repo);
        let Ok(mut p) = packageurl::PackageUrl::new("oci", last.to_string()) else { return String::new() };
        if p.with_version(self.digest.clone()).is_err() || p.add_qualifier("repository_url", repo.to_string()).is_err()
        {
            return String::new();
        }
        p.to_string()
    }
}

/// One row of the SBOM: a package, a runtime, or the OS.
struct Item {
    name: String,
    version: String,
    purl: String,
    license: Option<String>,
    group: Option<String>,
    path: String,
    /// SPDX primary package purpose.
    purpose: &'static str,
    /// CycloneDX component type.
    kind: &'static str,
    ecosystem: &'static str,
}

fn items(inv: &Inventory) -> Vec<Item> {
    let mut out = Vec::new();
    if let Some(os) = &inv.os {
        out.push(Item {
            name: os.id.clone(),
            version: os.version_id.clone(),
            purl: String::new(),
            license: None,
            group: None,
            path: "/etc/os-release".into(),
            purpose: "OPERATING-SYSTEM",
            kind: "operating-system",
            ecosystem: "os",
        });
    }
    out.extend(inv.runtimes.iter().map(runtime_item));
    out.extend(inv.packages.iter().map(package_item));
    out
}

fn runtime_item(r: &Runtime) -> Item {
    let (name, purl) = match r.kind {
        RuntimeKind::Python => ("python", purl::generic("python", &r.version)),
        RuntimeKind::Jdk => ("openjdk", purl::generic("openjdk", &r.version)),
        RuntimeKind::Go => ("go", purl::golang("stdlib", &r.version)),
    };
    Item {
        name: name.into(),
        version: r.version.clone(),
        purl,
        license: None,
        group: None,
        path: r.path.clone(),
        purpose: "APPLICATION",
        kind: "framework",
        ecosystem: "runtime",
    }
}

fn package_item(p: &Package) -> Item {
    Item {
        name: p.name.clone(),
        version: p.version.clone(),
        purl: p.purl.clone(),
        license: p.license.clone(),
        group: p.namespace.clone(),
        path: p.path.clone(),
        purpose: if p.ecosystem.is_os() { "OPERATING-SYSTEM" } else { "LIBRARY" },
        kind: "library",
        ecosystem: p.ecosystem.name(),
    }
}

/// An SPDX 2.3 document for the image.
pub fn spdx(inv: &Inventory, subject: &Subject) -> Value {
    let mut licenses: BTreeMap<String, String> = BTreeMap::new();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": subject.name,
        "versionInfo": subject.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": purl_ref(&subject.purl()),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, item) in items(inv).iter().enumerate() {
        let id = format!("SPDXRef-{}-{}", item.ecosystem, i + 1);
        // Package license fields are free text (`GPLv2+`, `BSD`), rarely SPDX expressions: each distinct text
        // becomes a LicenseRef with the text kept verbatim.
        let declared = match &item.license {
            Some(text) => {
                let next = format!("LicenseRef-{}", licenses.len() + 1);
                licenses.entry(text.clone()).or_insert(next).clone()
            }
            None => "NOASSERTION".to_string(),
        };
        let mut package = json!({
            "SPDXID": id,
            "name": item.name,
            "versionInfo": item.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": item.purpose,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("found at {}", item.path),
            "externalRefs": purl_ref(&item.purl),
        });
        if item.version.is_empty() {
            package.as_object_mut().map(|o| o.remove("versionInfo"));
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut extracted: Vec<(String, String)> = licenses.into_iter().map(|(text, id)| (id, text)).collect();
    extracted.sort_by_key(|(id, _)| id[11..].parse::<usize>().unwrap_or(0));
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.name,
        "documentNamespace": format!("https://kiln.invalid/spdx/{}", subject.hex()),
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, text)| json!({"licenseId": id, "extractedText": text, "name": text}))
            .collect();
    }
    doc
}

fn purl_ref(purl: &str) -> Value {
    if purl.is_empty() {
        return json!([]);
    }
    json!([{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}])
}

/// A CycloneDX 1.5 BOM for the image.
pub fn cyclonedx(inv: &Inventory, subject: &Subject) -> Value {
    let mut components = Vec::new();
    let mut refs = Vec::new();
    for (i, item) in items(inv).iter().enumerate() {
        let bom_ref = format!("{}-{}", item.ecosystem, i + 1);
        let mut c = json!({
            "type": item.kind,
            "bom-ref": bom_ref,
            "name": item.name,
            "properties": [{"name": "kiln:path", "value": item.path}],
        });
        if !item.version.is_empty() {
            c["version"] = json!(item.version);
        }
        if !item.purl.is_empty() {
            c["purl"] = json!(item.purl);
        }
        if let Some(group) = &item.group {
            c["group"] = json!(group);
        }
        if let Some(license) = &item.license {
            c["licenses"] = json!([{"license": {"name": license}}]);
        }
        refs.push(bom_ref);
        components.push(c);
    }
    let mut image = json!({"type": "container", "bom-ref": "image", "name": subject.name, "version": subject.digest});
    let image_purl = subject.purl();
    if !image_purl.is_empty() {
        image["purl"] = json!(image_purl);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial_number(&subject.digest),
        "version": 1,
        "metadata": {
            "timestamp": subject.created,
            "tools": {"components": [{"type": "application", "name": "kiln", "version": env!("CARGO_PKG_VERSION")}]},
            "component": image,
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": refs}],
    })
}

/// A UUID (version 5 layout, from a SHA-256 of the digest) as a URN: the same image, the same serial.
fn serial_number(digest: &str) -> String {
    let h = Sha256::digest(format!("kiln-sbom:{digest}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!("urn:uuid:{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Ecosystem;

    fn inv() -> Inventory {
        Inventory {
            packages: vec![Package {
                ecosystem: Ecosystem::Rpm,
                namespace: None,
                name: "bash".into(),
                version: "5.1.8-6.el9".into(),
                arch: Some("x86_64".into()),
                license: Some("GPLv3+".into()),
                source: None,
                path: "/var/lib/rpm/rpmdb.sqlite".into(),
                purl: "pkg:rpm/redhat/bash@5.1.8-6.el9?arch=x86_64".into(),
            }],
            ..Default::default()
        }
    }

    fn subject() -> Subject {
        Subject {
            name: "127.0.0.1:5000/team/app:1".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn spdx_has_purls_and_license_refs() {
        let doc = spdx(&inv(), &subject());
        assert_eq!(
            doc["packages"][1]["externalRefs"][0]["referenceLocator"],
            "pkg:rpm/redhat/bash@5.1.8-6.el9?arch=x86_64"
        );
        assert_eq!(doc["packages"][1]["licenseDeclared"], "LicenseRef-1");
        assert_eq!(doc["hasExtractedLicensingInfos"][0]["extractedText"], "GPLv3+");
        assert_eq!(doc["relationships"].as_array().unwrap().len(), 2);
        assert!(subject().purl().starts_with("pkg:oci/app@sha256"), "{}", subject().purl());
    }

    #[test]
    fn cyclonedx_serial_is_a_stable_uuid() {
        let a = cyclonedx(&inv(), &subject());
        let b = cyclonedx(&inv(), &subject());
        assert_eq!(a, b);
        let serial = a["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36);
        assert_eq!(&serial[9 + 14..9 + 15], "5");
        assert_eq!(a["components"][0]["purl"], "pkg:rpm/redhat/bash@5.1.8-6.el9?arch=x86_64");
    }
}
