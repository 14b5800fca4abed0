//! The configuration files routing generates for JVM build tools: Maven's `settings.xml` (one mirror of
//! everything, plus the egress proxy, which Maven does not take from the environment) and a Gradle init
//! script that replaces every Maven repository of a build and its plugins with the Nexus one.

/// A Maven `settings.xml` whose only mirror takes every repository (`mirrorOf *`) to `mirror`.
pub fn maven_settings(mirror: &str, proxy: Option<&str>) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- kiln: generated for one RUN step; not part of the image -->\n\
         <settings xmlns=\"http://maven.apache.org/SETTINGS/1.0.0\">\n  <mirrors>\n    <mirror>\n      \
         <id>kiln-nexus</id>\n      <name>Nexus (kiln)</name>\n",
    );
    xml.push_str(&format!("      <url>{}</url>\n      <mirrorOf>*</mirrorOf>\n", escape(mirror)));
    xml.push_str("    </mirror>\n  </mirrors>\n");
    if let Some((host, port)) = proxy.and_then(|p| p.rsplit_once(':')) {
        xml.push_str("  <proxies>\n");
        for protocol in ["https", "http"] {
            xml.push_str(&format!(
                "    <proxy>\n      <id>kiln-egress-{protocol}</id>\n      <active>true</active>\n      \
                 <protocol>{protocol}</protocol>\n      <host>{host}</host>\n      <port>{port}</port>\n    </proxy>\n"
            ));
        }
        xml.push_str("  </proxies>\n");
    }
    xml.push_str("</settings>\n");
    xml
}

/// A Gradle init script sending the repositories of every project, build script and plugin resolution
/// to `mirror`.
pub fn gradle_init(mirror: &str) -> String {
    let url = mirror.replace('\\', "\\\\").replace('\'', "\\'");
    format!(
        "// kiln: generated for one RUN step; not part of the image\n\
def kilnNexus = '{url}'\n\
def kilnMirror = {{ RepositoryHandler handler ->\n\
    handler.all {{ ArtifactRepository repo ->\n\
        if (repo instanceof MavenArtifactRepository && repo.url.toString() != kilnNexus) {{\n\
            handler.remove(repo)\n\
        }}\n\
    }}\n\
    handler.maven {{\n\
        url kilnNexus\n\
        if (kilnNexus.startsWith('http:')) {{ allowInsecureProtocol = true }}\n\
    }}\n\
}}\n\
beforeSettings {{ settings -> kilnMirror(settings.pluginManagement.repositories) }}\n\
allprojects {{\n\
    kilnMirror(buildscript.repositories)\n\
    kilnMirror(repositories)\n\
}}\n"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maven_settings_mirror_everything_and_carry_the_proxy() {
        let xml = maven_settings("https://nexus/repository/maven-public/?a=1&b=2", Some("127.0.0.1:3128"));
        assert!(xml.contains("<mirrorOf>*</mirrorOf>"));
        assert!(xml.contains("<url>https://nexus/repository/maven-public/?a=1&amp;b=2</url>"));
        assert!(xml.contains("<host>127.0.0.1</host>") && xml.contains("<port>3128</port>"));
        assert!(!maven_settings("https://n/", None).contains("<proxies>"));
    }

    #[test]
    fn the_gradle_script_quotes_the_url() {
        let script = gradle_init("https://nexus/it's/");
        assert!(script.contains("def kilnNexus = 'https://nexus/it\\'s/'"));
        assert!(script.contains("beforeSettings"));
    }
}
