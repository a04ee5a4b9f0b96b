'use strict';
// Runs against a running pair: tests/test_node_client.py starts one, mints the
// tokens and sets these variables. Without them the tests that need the pair
// are skipped (say why), so `npm test` alone does not fail obscurely.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { createClient, decodeStatusDetails, tlsCredentials, grpc } = require('..');

const NEEDED = [
  'RECIPEIMAGE_TEST_BUDGET_ADDRESS',
  'RECIPEIMAGE_TEST_IMAGE_ADDRESS',
  'RECIPEIMAGE_TEST_USER_ID',
  'RECIPEIMAGE_TEST_USER_TOKEN',
  'RECIPEIMAGE_TEST_LIMITED_TOKEN',
];
const missing = NEEDED.filter((name) => !process.env[name]);
const skip = missing.length > 0 ? `no running pair: ${missing.join(', ')} not set` : false;

const SOUP = {
  recipeId: 'r-node-soup',
  title: 'Broccoli Soup with Coconut Milk',
  ingredients: ['1 14-ounce can of full fat coconut milk', '2 heads of broccoli'],
  instructions: ['Simmer the broccoli in the coconut milk.', 'Puree.'],
};
// Never generated for anyone: the cache cannot serve it.
const CAKE = {
  recipeId: 'r-node-cake',
  title: 'The Best Vegan Chocolate Cake',
  ingredients: ['2 cups flour', '1 cup cocoa powder', '1 cup almond milk'],
};
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

// Mutual TLS when the pair serves it (RECIPEIMAGE_TEST_TLS_* name the files).
function credentials() {
  const env = process.env;
  if (!env.RECIPEIMAGE_TEST_TLS_CA_FILE) {
    return undefined;
  }
  return tlsCredentials({
    caFile: env.RECIPEIMAGE_TEST_TLS_CA_FILE,
    certFile: env.RECIPEIMAGE_TEST_TLS_CERT_FILE,
    keyFile: env.RECIPEIMAGE_TEST_TLS_KEY_FILE,
  });
}

const clients = [];
function clientWith(token) {
  const client = createClient({
    budgetAddress: process.env.RECIPEIMAGE_TEST_BUDGET_ADDRESS,
    imageAddress: process.env.RECIPEIMAGE_TEST_IMAGE_ADDRESS,
    token,
    credentials: credentials(),
  });
  clients.push(client);
  return client;
}
after(() => clients.forEach((client) => client.close()));

// The tests of one file run in order: limits and stats see the generation.
let generated = null;

test('GenerateImage generates and stores an image, then serves it from the cache', { skip }, async () => {
  const client = clientWith(process.env.RECIPEIMAGE_TEST_USER_TOKEN);
  generated = await client.generateImage({ recipe: SOUP });
  assert.equal(generated.source, 'IMAGE_SOURCE_GENERATED');
  assert.ok(BigInt(generated.costMicros) > 0n, `cost ${generated.costMicros}`);
  assert.equal(generated.fallbackUsed, false);
  assert.match(generated.context.dish, /soup/i);

  const stored = await client.getImage({ imageId: generated.image.imageId });
  assert.equal(stored.image.contentType, 'image/png');
  assert.equal(stored.data.length, Number(generated.image.sizeBytes));
  assert.deepEqual(stored.data.subarray(0, 8), PNG_SIGNATURE);

  const again = await client.generateImage({ recipe: SOUP });
  assert.equal(again.source, 'IMAGE_SOURCE_CACHE_EXACT');
  assert.equal(again.costMicros, '0');
  assert.equal(again.costSavedMicros, generated.costMicros);
  assert.equal(again.image.imageId, generated.image.imageId);
});

test('GetLimits shows the tier and the generation spent in the daily window', { skip }, async () => {
  assert.ok(generated, 'the GenerateImage test ran first');
  const client = clientWith(process.env.RECIPEIMAGE_TEST_USER_TOKEN);
  const limits = await client.getLimits({});
  assert.equal(limits.userId, process.env.RECIPEIMAGE_TEST_USER_ID);
  assert.equal(limits.tier, 'USER_TIER_PREMIUM');
  const daily = limits.windows.find((window) => window.kind === 'WINDOW_KIND_USER_DAILY');
  assert.ok(daily, 'a daily window');
  assert.equal(daily.spentMicros, generated.costMicros);
  assert.equal(
    BigInt(daily.remainingMicros),
    BigInt(daily.limitMicros) - BigInt(daily.spentMicros) - BigInt(daily.reservedMicros),
  );
});

test('GetUsageStats counts the generation, its cost and the cache hit', { skip }, async () => {
  assert.ok(generated, 'the GenerateImage test ran first');
  const client = clientWith(process.env.RECIPEIMAGE_TEST_USER_TOKEN);
  const stats = await client.getUsageStats({ period: 'STATS_PERIOD_DAY' });
  assert.equal(stats.userId, process.env.RECIPEIMAGE_TEST_USER_ID);
  assert.equal(stats.totalCostMicros, generated.costMicros);
  assert.equal(stats.cacheHits, '1');
  assert.equal(stats.costSavedMicros, generated.costMicros);
});

test('a refusal over the daily limit carries ErrorInfo, QuotaFailure and RetryInfo', { skip }, async () => {
  const client = clientWith(process.env.RECIPEIMAGE_TEST_LIMITED_TOKEN);
  const error = await client.generateImage({ recipe: CAKE }).then(
    () => assert.fail('a generation over the daily limit was served'),
    (refusal) => refusal,
  );
  assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);

  const status = decodeStatusDetails(error);
  assert.ok(status, 'a grpc-status-details-bin trailer');
  assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(status.errorInfo.reason, 'DAILY_LIMIT_EXCEEDED');
  assert.equal(status.errorInfo.domain, 'recipeimage');
  assert.equal(status.errorInfo.metadata.window, 'user_daily');
  assert.ok(status.quotaFailure.violations.length >= 1);
  assert.match(status.quotaFailure.violations[0].subject, /^user:/);
  // Until the daily window resets: more than nothing, at most a day.
  assert.ok(status.retryInfo.retryDelayMs > 0, `retry after ${status.retryInfo.retryDelayMs} ms`);
  assert.ok(status.retryInfo.retryDelayMs <= 24 * 3600 * 1000);
});

test('a call refused without details decodes to null', () => {
  assert.equal(decodeStatusDetails(new Error('no trailer')), null);
  const metadata = new grpc.Metadata();
  assert.equal(decodeStatusDetails({ metadata }), null);
});
