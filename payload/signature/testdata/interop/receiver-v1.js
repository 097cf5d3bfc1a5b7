const express = require('express');
const { Webhook } = require('standardwebhooks');

const app = express();
const wh = new Webhook(process.env.WEBHOOK_SECRET); // "whsec_..."

// express.raw keeps the body as the exact bytes that were signed;
// express.json() would parse them, and re-serialized JSON does not verify.
app.post('/webhook', express.raw({ type: 'application/json' }), (req, res) => {
  let generation;
  try {
    // Checks webhook-id, webhook-timestamp (5 minutes either way) and the
    // v1 entries of webhook-signature; returns the parsed JSON body.
    generation = wh.verify(req.body, req.headers);
  } catch (err) {
    return res.status(400).send('invalid signature');
  }
  const { id, output, tool, type } = generation;
  console.log(`Generation ${id} completed: ${output}`);
  // Save to database, notify user, etc. Drop repeats of req.headers['webhook-id'].

  res.status(200).send('OK');
});

app.listen(3000);
