// Verifies webhooks signed by payload/signature with independent code: "v1"
// entries with the official standardwebhooks package, "v1a" entries with
// Node's built-in Ed25519. interop_test.go runs it.
//
// stdin: a JSON array of cases
//   {name, id, timestamp, signature, body_b64, secrets: ["whsec_..."], public_keys: ["whpk_..."]}
// stdout: a JSON array, one result per case, in order
//   {name, v1: [bool per secret], v1a: [bool per public key]}
// Exits non-zero on anything but a verification failure.
'use strict';

const crypto = require('node:crypto');
const { Webhook, WebhookVerificationError } = require('standardwebhooks');

function verifyV1(secret, body, headers) {
  try {
    new Webhook(secret).verify(body, headers);
    return true;
  } catch (err) {
    if (err instanceof WebhookVerificationError) return false;
    throw err;
  }
}

// publicKeyObject builds a KeyObject from a raw whpk_ key: its base64 holds
// the 32 key bytes, which JWK carries base64url-encoded as "x" (RFC 8037).
function publicKeyObject(whpk) {
  if (!whpk.startsWith('whpk_')) throw new Error('not a whpk_ key');
  const x = Buffer.from(whpk.slice('whpk_'.length), 'base64').toString('base64url');
  return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

function verifyV1a(whpk, body, headers) {
  const key = publicKeyObject(whpk);
  const signed = Buffer.concat([
    Buffer.from(`${headers['webhook-id']}.${headers['webhook-timestamp']}.`),
    body,
  ]);
  return headers['webhook-signature'].split(' ').some((entry) => {
    const [version, sig] = entry.split(',');
    return version === 'v1a' && crypto.verify(null, signed, key, Buffer.from(sig, 'base64'));
  });
}

const cases = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
const results = cases.map((c) => {
  const body = Buffer.from(c.body_b64, 'base64');
  const headers = {
    'webhook-id': c.id,
    'webhook-timestamp': c.timestamp,
    'webhook-signature': c.signature,
  };
  return {
    name: c.name,
    v1: (c.secrets || []).map((s) => verifyV1(s, body, headers)),
    v1a: (c.public_keys || []).map((k) => verifyV1a(k, body, headers)),
  };
});
process.stdout.write(JSON.stringify(results));
