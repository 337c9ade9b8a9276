#!/usr/bin/env node
"use strict";
// The CLI lives in the sidecar bundle; build it first with `npm run build`.
require("../dist/sidecar.js");
