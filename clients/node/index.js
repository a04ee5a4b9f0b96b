'use strict';
// A small Node.js client of recipeimage's BudgetService and ImageService,
// built from the contracts in protos/ at run time (@grpc/proto-loader), and a
// decoder of the google.rpc details a refusal carries in its
// `grpc-status-details-bin` trailer.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// The repository's contracts; a copy elsewhere can be named with `protosDir`.
const DEFAULT_PROTOS_DIR = path.resolve(__dirname, '..', '..', 'protos');
// google/rpc/status.proto and error_details.proto, vendored from googleapis.
const RPC_PROTOS_DIR = path.join(__dirname, 'protos');

const SERVICE_FILES = [
  'recipeimage/budget/v1/budget_service.proto',
  'recipeimage/image/v1/image_service.proto',
];

// int64 money (`*_micros`) arrives as a decimal string: a JS number would
// lose precision past 2^53. Enums arrive by name, unset fields as defaults.
const LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

function loadServices(protosDir = DEFAULT_PROTOS_DIR) {
  const definition = protoLoader.loadSync(SERVICE_FILES, {
    ...LOADER_OPTIONS,
    includeDirs: [protosDir],
  });
  const loaded = grpc.loadPackageDefinition(definition);
  return {
    BudgetService: loaded.recipeimage.budget.v1.BudgetService,
    ImageService: loaded.recipeimage.image.v1.ImageService,
  };
}

// One unary call as a promise, with the bearer token and a deadline.
function call(stub, method, request, token, deadlineMs) {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const deadline = new Date(Date.now() + deadlineMs);
  return new Promise((resolve, reject) => {
    stub[method](request, metadata, { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/**
 * A client of both services.
 *
 * options:
 *   budgetAddress, imageAddress  host:port of each service
 *   token                        a bearer token (user, service or admin)
 *   credentials                  tlsCredentials({caFile, certFile, keyFile}) for
 *                                TLS or mutual TLS; plaintext when left out
 *   deadlineMs                   each call's deadline (default 30000)
 *   protosDir                    where the recipeimage protos are
 */
function createClient(options) {
  const { budgetAddress, imageAddress, token } = options;
  if (!budgetAddress || !imageAddress || !token) {
    throw new Error('createClient needs budgetAddress, imageAddress and token');
  }
  const credentials = options.credentials || grpc.credentials.createInsecure();
  const deadlineMs = options.deadlineMs || 30000;
  const services = loadServices(options.protosDir);
  const budget = new services.BudgetService(budgetAddress, credentials);
  const image = new services.ImageService(imageAddress, credentials);
  const unary = (stub, method) => (request) => call(stub, method, request, token, deadlineMs);
  return {
    generateImage: unary(image, 'GenerateImage'),
    getImage: unary(image, 'GetImage'),
    getLimits: unary(budget, 'GetLimits'),
    getUsageStats: unary(budget, 'GetUsageStats'),
    close() {
      budget.close();
      image.close();
    },
  };
}

/**
 * Channel credentials for TLS from PEM files: caFile is the CA that signed the
 * servers' certificates; certFile and keyFile, for mutual TLS, the client's.
 */
function tlsCredentials({ caFile, certFile, keyFile }) {
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new Error('tlsCredentials: certFile and keyFile go together');
  }
  const read = (file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(caFile), read(keyFile), read(certFile));
}

let rpcTypes = null;

function loadRpcTypes() {
  if (rpcTypes === null) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) =>
      target.startsWith('google/protobuf/') ? target : path.join(RPC_PROTOS_DIR, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], {
      keepCase: false,
    });
    rpcTypes = root;
  }
  return rpcTypes;
}

const TO_OBJECT = { longs: String, enums: String, defaults: true };

/**
 * The google.rpc.Status of a failed call, decoded from its
 * `grpc-status-details-bin` trailer: { code, message, details }, where
 * details is a list of { type, value } (type: 'google.rpc.ErrorInfo', ...),
 * and, for the kinds clients branch on, errorInfo, quotaFailure, retryInfo
 * (with retryDelayMs) and badRequest. null when the call carried no details.
 */
function decodeStatusDetails(error) {
  const raw = error && error.metadata ? error.metadata.get('grpc-status-details-bin') : [];
  if (!raw || raw.length === 0) {
    return null;
  }
  const root = loadRpcTypes();
  const status = root.lookupType('google.rpc.Status').decode(raw[0]);
  const details = status.details.map((any) => {
    // protobufjs's bundled google.protobuf.Any keeps the proto's snake_case name.
    const typeUrl = any.type_url || '';
    const type = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
    const messageType = root.lookup(type);
    if (!(messageType instanceof protobuf.Type)) {
      return { type, value: null };
    }
    return { type, value: messageType.toObject(messageType.decode(any.value), TO_OBJECT) };
  });
  const find = (type) => (details.find((detail) => detail.type === type) || {}).value || null;
  const retryInfo = find('google.rpc.RetryInfo');
  if (retryInfo) {
    const delay = retryInfo.retryDelay || { seconds: '0', nanos: 0 };
    retryInfo.retryDelayMs = Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1e6);
  }
  return {
    code: status.code,
    message: status.message,
    details,
    errorInfo: find('google.rpc.ErrorInfo'),
    quotaFailure: find('google.rpc.QuotaFailure'),
    retryInfo,
    badRequest: find('google.rpc.BadRequest'),
  };
}

module.exports = { createClient, decodeStatusDetails, loadServices, tlsCredentials, grpc };
