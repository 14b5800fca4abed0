//! Java archives: every `META-INF/maven/<group>/<artifact>/pom.properties` in a jar, war or ear, and in the
//! archives nested one level inside it (Spring Boot's `BOOT-INF/lib/*.jar`, a war's `WEB-INF/lib/*.jar`).

use std::io::{Cursor, Read};

use super::scan::MavenArtifact;

/// Nested archives bigger than this are not opened.
const MAX_NESTED: u64 = 128 << 20;

/// The Maven artifacts in an archive held in memory; `location` is its path in the image.
pub fn artifacts(bytes: &[u8], location: &str) -> Result<Vec<MavenArtifact>, String> {
    let mut out = Vec::new();
    scan(bytes, location, true, &mut out)?;
    out.sort_by(|a, b| a.location.cmp(&b.location).then(a.artifact.cmp(&b.artifact)));
    out.dedup();
    Ok(out)
}

fn scan(bytes: &[u8], location: &str, nested: bool, out: &mut Vec<MavenArtifact>) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    for i in 0..archive.len() {
        let Ok(mut file) = archive.by_index(i) else { continue };
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            let mut text = String::new();
            if file.by_ref().take(64 * 1024).read_to_string(&mut text).is_ok()
                && let Some(artifact) = parse_pom_properties(&text, location)
            {
                out.push(artifact);
            }
        } else if nested && (name.ends_with(".jar") || name.ends_with(".war")) && file.size() <= MAX_NESTED {
            let mut inner = Vec::with_capacity(file.size() as usize);
            if file.read_to_end(&mut inner).is_ok() {
                // A nested archive that is not a zip is just a file with a misleading name.
                let _ = scan(&inner, &format!("{location}!/{name}"), false, out);
            }
        }
    }
    Ok(())
}

fn parse_pom_properties(text: &str, location: &str) -> Option<MavenArtifact> {
    let (mut group, mut artifact, mut version) = (None, None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().to_string();
        match k.trim() {
            "groupId" => group = Some(v),
            "artifactId" => artifact = Some(v),
            "version" => version = Some(v),
            _ => {}
        }
    }
    Some(MavenArtifact { group: group?, artifact: artifact?, version: version?, location: location.to_string() })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    /// A jar with the given entries (name, content), stored without compression.
    pub(crate) fn jar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, content) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(content).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    use super::*;

    #[test]
    fn pom_properties_and_nested_jars() {
        let inner = jar(&[(
            "META-INF/maven/com.google.guava/guava/pom.properties",
            b"#generated\ngroupId=com.google.guava\nartifactId=guava\nversion=31.1-jre\n",
        )]);
        let outer = jar(&[
            ("META-INF/maven/com.example/app/pom.properties", b"groupId=com.example\nartifactId=app\nversion=1.0\n"),
            ("BOOT-INF/lib/guava-31.1-jre.jar", &inner),
        ]);
        let found = artifacts(&outer, "opt/app.jar").unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].artifact, "app");
        assert_eq!(found[1].location, "opt/app.jar!/BOOT-INF/lib/guava-31.1-jre.jar");
        assert!(artifacts(b"not a zip", "x.jar").is_err());
    }
}
