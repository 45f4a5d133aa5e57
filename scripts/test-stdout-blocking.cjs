// Preloaded by scripts/run-tests.mjs into the test runner and, through its forwarded --require,
// into every test file's process: their stdout (the pipe that carries each test's verdict to the
// runner) is made blocking. With --test-force-exit a test file's process exits as soon as its tests
// are done, and writes still queued on a non-blocking pipe were lost with it: the runner then
// reported fewer tests than had run, with fail 0 and exit code 0 (a CI run counted 2107 of 2127;
// `node --test --test-concurrency=2 --test-force-exit` on two config test files lost 5-23 of 142
// in 4 of 8 runs, none in 8 with this). Node.js issue 64833. Node does the same for its own
// stdout before an exit (lib/net.js, lib/tty.js); a handle without setBlocking is left alone.
'use strict'
const handle = process.stdout._handle
if (handle && typeof handle.setBlocking === 'function') handle.setBlocking(true)
