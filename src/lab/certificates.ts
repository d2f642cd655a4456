// Self-signed certificates for the lab's OpenVPN peers. Each side pins the
// other's certificate with `peer-fingerprint` (OpenVPN 2.6), so no CA, no
// easy-rsa and no Diffie-Hellman parameters are needed.

import { X509Certificate } from "node:crypto";
import { chmod, readFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "./namespaces.js";

export interface Certificate {
  certPath: string;
  keyPath: string;
  /** SHA-256 fingerprint as colon-separated hex pairs, the form `peer-fingerprint` takes. */
  fingerprint: string;
}

// Valid for two days, long enough for any lab run, and short because the
// private key sits unencrypted in a temp folder.
const VALIDITY_DAYS = 2;

/** Generates an EC P-256 key and self-signed certificate named `name` in `dir`. */
export async function createSelfSignedCertificate(dir: string, name: string): Promise<Certificate> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);

  await runCommand([
    "openssl", "req", "-x509",
    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-noenc",
    "-keyout", keyPath,
    "-out", certPath,
    "-days", String(VALIDITY_DAYS),
    "-subj", `/CN=${name}`,
  ]);
  await chmod(keyPath, 0o600);

  const certificate = new X509Certificate(await readFile(certPath));
  return { certPath, keyPath, fingerprint: certificate.fingerprint256 };
}
