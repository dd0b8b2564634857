// `node --test` (from this directory): the plugin's SHA-256 and HMAC against
// Node's own, and the test vector every example of this plugin checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';

import { constantTimeEqual, hex, hmacSha256, sha256 } from '../src/hmac.js';

const bytes = (s) => new TextEncoder().encode(s);

test('the shared test vector', () => {
  assert.equal(
    hex(hmacSha256(bytes('test-key'), bytes('POST\n/orders?id=7\n{"item":1}'))),
    '92890af6457d3944935d2f04419ecb3fef3bcd97bc06a61b669a19d490c66f35',
  );
});

test('sha256 matches node:crypto at every length around the block edges', () => {
  for (let len = 0; len < 300; len++) {
    const data = randomBytes(len);
    assert.equal(hex(sha256(data)), createHash('sha256').update(data).digest('hex'), `length ${len}`);
  }
});

test('hmac matches node:crypto, keys shorter and longer than a block', () => {
  for (const keyLen of [0, 1, 32, 63, 64, 65, 200]) {
    const key = randomBytes(keyLen);
    const message = randomBytes(100 + keyLen);
    assert.equal(
      hex(hmacSha256(key, message)),
      createHmac('sha256', key).update(message).digest('hex'),
      `key length ${keyLen}`,
    );
  }
});

test('constantTimeEqual', () => {
  assert.ok(constantTimeEqual('abc', 'abc'));
  assert.ok(constantTimeEqual('', ''));
  assert.ok(!constantTimeEqual('abc', 'abd'));
  assert.ok(!constantTimeEqual('abc', 'ab'));
  assert.ok(!constantTimeEqual('', 'a'));
});
