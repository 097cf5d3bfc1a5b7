// Runs one receiver file from README.md for interop_test.go, unchanged: its
// app.listen(3000) is redirected to a free port on 127.0.0.1, printed as
// "listening PORT" on the first line of stdout.
'use strict';

const http = require('node:http');
const path = require('node:path');
const express = require('express');

express.application.listen = function listen() {
  const server = http.createServer(this);
  server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
  return server;
};

require(path.resolve(process.argv[2]));
