const crypto = require('node:crypto');
const express = require('express');

const TOLERANCE_SECONDS = 5 * 60;

// "whpk_" + base64 of the raw 32-byte Ed25519 public key; JWK wants it base64url.
const publicKey = crypto.createPublicKey({
  key: {
    kty: 'OKP',
    crv: 'Ed25519',
    x: Buffer.from(process.env.WEBHOOK_PUBLIC_KEY.replace(/^whpk_/, ''), 'base64').toString('base64url'),
  },
  format: 'jwk',
});

// verifyWebhook returns true if one v1a entry of webhook-signature is a valid
// signature of "{webhook-id}.{webhook-timestamp}.{body}" and the timestamp is
// within TOLERANCE_SECONDS of now.
function verifyWebhook(body, headers) {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!Buffer.isBuffer(body) || !id || !timestamp || !signatures || !/^\d+$/.test(timestamp)) {
    return false;
  }
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) {
    return false;
  }
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  return signatures.split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    return version === 'v1a' && signature !== undefined &&
      crypto.verify(null, signed, publicKey, Buffer.from(signature, 'base64'));
  });
}

const app = express();

app.post('/webhook', express.raw({ type: 'application/json' }), (req, res) => {
  if (!verifyWebhook(req.body, req.headers)) {
    return res.status(400).send('invalid signature');
  }
  const { id, output, tool, type } = JSON.parse(req.body);
  console.log(`Generation ${id} completed: ${output}`);
  // Save to database, notify user, etc. Drop repeats of req.headers['webhook-id'].

  res.status(200).send('OK');
});

app.listen(3000);
