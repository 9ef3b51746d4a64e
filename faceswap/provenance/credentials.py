"""Layer 3: Content Credentials (C2PA) via c2pa-python, signed offline.

Signing needs an X.509 chain: c2pa rejects a self-signed leaf, so on first use we make a local
root CA and a leaf signed by it (ECDSA P-256, ES256) in `config_dir()/c2pa/` and keep them there
(private keys mode 0600). A user with a real chain passes `cert=`/`key=` (PEM files, leaf first)
or sets `FACESWAP_C2PA_CERT` / `FACESWAP_C2PA_KEY`.

The manifest says: action `c2pa.created` with digitalSourceType trainedAlgorithmicMedia, the
tool, and an `org.faceswap.provenance` assertion with the model id and the watermark tag. It is
embedded as the last step, into a temporary copy that replaces the file only when signing
succeeded; any failure leaves the (already labelled) file untouched and returns a warning.

Verification never goes online (no OCSP, no remote manifests). The status is:
- `valid`: signature and content hashes check out (`trusted` tells whether the signer chains to a
  trust anchor: our own local root, or one passed with `trust=`);
- `tampered`: the manifest is intact but the content (or an assertion) no longer matches its hash;
- `invalid`: the manifest or its signature is broken;
- `absent`: no manifest (never signed, or stripped: any remux drops it);
- `unsupported`: a format c2pa cannot carry.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceswap import __version__
from faceswap.atomic import atomic_write_bytes
from faceswap.errors import FaceswapError

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION_LABEL = "org.faceswap.provenance"
_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".png": "image/png", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg", ".webp": "image/webp", ".avi": "video/x-msvideo"}
_TAMPER_CODES = ("assertion.dataHash.mismatch", "assertion.bmffHash.mismatch", "assertion.boxesHash.mismatch",
                 "assertion.collectionHash.mismatch", "assertion.hashedURI.mismatch")


def config_dir() -> Path:
    """`$FACESWAP_CONFIG_DIR`, else `$XDG_CONFIG_HOME/faceswap`, else `~/.config/faceswap`."""
    if os.environ.get("FACESWAP_CONFIG_DIR"):
        return Path(os.environ["FACESWAP_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "faceswap"


@dataclass(frozen=True)
class SigningIdentity:
    """PEM files: `chain` (leaf first, then issuers), `key` (the leaf's private key), `root` (the
    trust anchor, when we made it)."""

    chain: Path
    key: Path
    root: Path | None = None


def _make_chain(folder: Path) -> SigningIdentity:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    user = os.environ.get("USER") or "user"

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"faceswap ({user})")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=not sign, crl_sign=not sign, encipher_only=False, decipher_only=False)

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name("faceswap local root")).issuer_name(name("faceswap local root"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(name("faceswap content signer")).issuer_name(root.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3 * 365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))

    def pem(cert) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    folder.mkdir(parents=True, exist_ok=True)
    ident = SigningIdentity(folder / "signer-chain.pem", folder / "signer.key", folder / "root.pem")
    atomic_write_bytes(folder / "root.key", key_pem(root_key), private=True)
    atomic_write_bytes(ident.root, pem(root))
    atomic_write_bytes(ident.key, key_pem(leaf_key), private=True)
    atomic_write_bytes(ident.chain, pem(leaf) + pem(root))  # written last: its presence means "complete"
    return ident


def signing_identity(cert: str | Path | None = None, key: str | Path | None = None, create: bool = True) -> SigningIdentity:
    """The chain to sign with: `cert`/`key`, else `$FACESWAP_C2PA_CERT`/`$FACESWAP_C2PA_KEY`, else the
    local chain in `config_dir()/c2pa` (made on first use when `create`)."""
    cert = cert or os.environ.get("FACESWAP_C2PA_CERT")
    key = key or os.environ.get("FACESWAP_C2PA_KEY")
    if cert or key:
        if not (cert and key):
            raise FaceswapError("C2PA signing needs both a certificate chain and its private key (PEM files)")
        for p in (cert, key):
            if not Path(p).is_file():
                raise FaceswapError(f"C2PA credential file {p} not found")
        return SigningIdentity(Path(cert), Path(key))
    folder = config_dir() / "c2pa"
    ident = SigningIdentity(folder / "signer-chain.pem", folder / "signer.key", folder / "root.pem")
    if ident.chain.is_file() and ident.key.is_file():
        return ident
    if not create:
        raise FaceswapError(f"no C2PA signing certificate in {folder}")
    try:
        return _make_chain(folder)
    except OSError as exc:
        raise FaceswapError(f"cannot create the C2PA signing certificate in {folder}: {exc.strerror or exc}") from exc


def manifest_definition(model_id: str, title: str, watermark_tag: str | None = None) -> dict:
    """The C2PA manifest for a faceswap output."""
    agent = {"name": "faceswap", "version": __version__}
    data = {"synthetic": True, "model_id": model_id}
    if watermark_tag:
        data["watermark"] = watermark_tag
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": agent}]}},
            {"label": ASSERTION_LABEL, "data": data},
        ],
    }


def _context(trust: list[str] | None = None):
    import c2pa

    settings: dict = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
                      "builder": {"thumbnail": {"enabled": False}}}
    if trust:
        settings["trust"] = {"user_anchors": "\n".join(trust)}
    return c2pa.Context(settings=c2pa.Settings.from_dict(settings))


def sign_file(path: str | Path, model_id: str, cert: str | Path | None = None, key: str | Path | None = None,
              watermark_tag: str | None = None) -> str | None:
    """Attach a signed manifest to `path` in place (temp copy + rename).

    Returns None on success, else a one-line warning: the file is then exactly as it was.
    """
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        return f"{path.name}: Content Credentials are not supported for {path.suffix or 'this'} files; skipped"
    tmp = path.with_name(f".{path.stem}.c2pa-partial{path.suffix}")
    try:
        import c2pa

        ident = signing_identity(cert, key)
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, ident.chain.read_bytes(), ident.key.read_bytes(), None)
        signer = c2pa.Signer.from_info(info)
        builder = c2pa.Builder(manifest_definition(model_id, path.name, watermark_tag), _context())
        with open(path, "rb") as src, open(tmp, "w+b") as dst:
            builder.sign(signer, mime, src, dst)
        if tmp.stat().st_size <= path.stat().st_size:
            raise FaceswapError("signed copy is not larger than the original")
        os.replace(tmp, path)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure: keep the labelled file, warn
        tmp.unlink(missing_ok=True)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{path.name}: Content Credentials not attached ({msg}); the file keeps its metadata label and watermark"


@dataclass
class CredentialReport:
    status: str  # valid | tampered | invalid | absent | unsupported | error
    trusted: bool = False
    synthetic: bool = False
    model_id: str | None = None
    digital_source_type: str | None = None
    signer: str | None = None
    issuer: str | None = None
    generator: str | None = None
    failures: list[str] = field(default_factory=list)
    detail: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _local_root() -> list[str]:
    root = config_dir() / "c2pa" / "root.pem"
    try:
        return [root.read_text()] if root.is_file() else []
    except OSError:
        return []


def verify_file(path: str | Path, trust: list[str | Path] | None = None) -> CredentialReport:
    """Read and validate the C2PA manifest of `path` (offline). `trust`: extra PEM anchor files."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        return CredentialReport("unsupported", detail=f"{path.suffix or 'no extension'}: not a format C2PA is read from here")
    try:
        import c2pa
    except ImportError as exc:
        return CredentialReport("error", detail=f"c2pa-python is not installed ({exc})")
    anchors = _local_root() + [Path(p).read_text() for p in (trust or [])]
    try:
        with open(path, "rb") as f:
            reader = c2pa.Reader.try_create(mime, f, None, _context(anchors))
            if reader is None:
                return CredentialReport("absent")
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as exc:
        return CredentialReport("invalid", detail=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    active = results.get("activeManifest", {}) if isinstance(results, dict) else {}
    failures = [f.get("code", "") for f in active.get("failure", [])]
    successes = [f.get("code", "") for f in active.get("success", [])]
    serious = [c for c in failures if c != "signingCredential.untrusted"]
    if not serious and state in ("Valid", "Trusted"):
        status = "valid"
    elif serious and all(c in _TAMPER_CODES for c in serious):
        status = "tampered"
    else:
        status = "invalid"
    report = CredentialReport(status, trusted="signingCredential.trusted" in successes, failures=failures)
    sig = manifest.get("signature_info") or {}
    report.signer, report.issuer = sig.get("common_name"), sig.get("issuer")
    gen = manifest.get("claim_generator_info") or []
    report.generator = " ".join(str(gen[0].get(k, "")) for k in ("name", "version")).strip() if gen else manifest.get("claim_generator")
    for assertion in manifest.get("assertions", []):
        label, data = assertion.get("label", ""), assertion.get("data", {})
        if label.startswith("c2pa.actions"):
            for action in data.get("actions", []):
                if action.get("action") == "c2pa.created" and action.get("digitalSourceType"):
                    report.digital_source_type = action["digitalSourceType"]
        elif label == ASSERTION_LABEL:
            report.model_id = data.get("model_id")
    report.synthetic = bool(report.digital_source_type and report.digital_source_type.rsplit("/", 1)[-1]
                            in ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "compositeSynthetic",
                                "algorithmicMedia"))
    return report


def c2pa_version() -> str | None:
    try:
        import c2pa

        return f"c2pa-python {c2pa.__version__} (c2pa-rs {c2pa.sdk_version()})"
    except ImportError:
        return None


__all__ = ["CredentialReport", "SigningIdentity", "c2pa_version", "config_dir", "manifest_definition", "sign_file",
           "signing_identity", "verify_file"]
