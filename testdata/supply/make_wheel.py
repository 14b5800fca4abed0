"""Writes a minimal pure-Python wheel (PEP 427): NAME/__init__.py holding VALUE, METADATA, WHEEL and a RECORD
with sha256 hashes. Usage: make_wheel.py OUT_DIR NAME VERSION VALUE; prints the wheel's path."""
import base64
import hashlib
import sys
import zipfile

out_dir, name, version, value = sys.argv[1:5]
dist = f"{name}-{version}.dist-info"
files = {
    f"{name}/__init__.py": f"VALUE = {value!r}\n",
    f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: kiln-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
path = f"{out_dir}/{name}-{version}-py3-none-any.whl"
record = []
with zipfile.ZipFile(path, "w") as wheel:
    for member, text in files.items():
        data = text.encode()
        wheel.writestr(member, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    wheel.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
print(path)
