'use strict';
// The documentation pages' Express webhook handler (express.json() + req.body + res.json),
// answering user_speak with a speak action. Started by `python -m bench --http` as
// `node server.js PORT`; one process, like every server in the benchmark.
const express = require('express');

const app = express();
app.use(express.json());

app.post('/webhook', (req, res) => {
  const event = req.body;

  if (event.type === 'user_speak') {
    return res.json({
      type: 'speak',
      session_id: event.session.id,
      text: `You said: ${event.text}`,
    });
  }

  res.status(204).send();
});

const port = Number(process.argv[2] || process.env.PORT || 3000);
app.listen(port, '127.0.0.1', () => {
  console.log(`express listening on http://127.0.0.1:${port}`);
});
