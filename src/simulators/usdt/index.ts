/**
 * LocalUSDT (LocalUSDT.sol beside this file) on the local chain: deployed by payrail's local setup and the tests,
 * never on a real network. The creation bytecode below is that source compiled with solc 0.8.28 (optimizer on,
 * 200 runs, evmVersion cancun); to rebuild it, compile LocalUSDT.sol with those settings and paste evm.bytecode.
 */
import {
  createPublicClient,
  createWalletClient,
  http,
  parseAbi,
  type Address,
  type TransactionReceipt,
  type Hex,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { viemLocalChain } from '../chain.ts';

export const LOCAL_USDT_BYTECODE: Hex =
  '0x6080604052348015600e575f5ffd5b506107fe8061001c5f395ff3fe608060405234801561000f575f5ffd5b50600436106100e5575f3560e01c806340c10f1911610088578063a9059cbb11610063578063a9059cbb14610230578063d047442814610243578063dd62ed3e14610264578063e47d60601461028e575f5ffd5b806340c10f19146101db57806370a08231146101ee57806395d89b411461020d575f5ffd5b806323b872dd116100c357806323b872dd1461016757806329c147661461017a578063313ce56714610187578063404e5129146101a1575f5ffd5b806306fdde03146100e9578063095ea7b31461012e57806318160ddd14610151575b5f5ffd5b6101186040518060400160405280601081526020016f131bd8d85b0815195d1a195c881554d160821b81525081565b604051610125919061063b565b60405180910390f35b61014161013c36600461068b565b6102b0565b6040519015158152602001610125565b6101595f5481565b604051908152602001610125565b6101416101753660046106b3565b61031c565b6004546101419060ff1681565b61018f600681565b60405160ff9091168152602001610125565b6101d96101af3660046106fc565b6001600160a01b03919091165f908152600360205260409020805460ff1916911515919091179055565b005b6101d96101e936600461068b565b6103cc565b6101596101fc36600461072d565b60016020525f908152604090205481565b610118604051806040016040528060048152602001631554d11560e21b81525081565b61014161023e36600461068b565b610451565b6101d961025136600461074d565b6004805460ff1916911515919091179055565b610159610272366004610766565b600260209081525f928352604080842090915290825290205481565b61014161029c36600461072d565b60036020525f908152604090205460ff1681565b335f8181526002602090815260408083206001600160a01b038716808552925280832085905551919290917f8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b9259061030a9086815260200190565b60405180910390a35060015b92915050565b6001600160a01b0383165f908152600260209081526040808320338452909152812054828110156103805760405162461bcd60e51b8152602060048201526009602482015268616c6c6f77616e636560b81b60448201526064015b60405180910390fd5b5f1981146103b65761039283826107a2565b6001600160a01b0386165f9081526002602090815260408083203384529091529020555b6103c1858585610483565b506001949350505050565b805f5f8282546103dc91906107b5565b90915550506001600160a01b0382165f90815260016020526040812080548392906104089084906107b5565b90915550506040518181526001600160a01b038316905f907fddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef9060200160405180910390a35050565b6004545f9060ff161561046f5761046833846105bd565b505f610316565b61047a338484610483565b50600192915050565b61048d83836105bd565b6001600160a01b0382166104d25760405162461bcd60e51b815260206004820152600c60248201526b7a65726f206164647265737360a01b6044820152606401610377565b6001600160a01b0383165f90815260016020526040902054818110156105245760405162461bcd60e51b815260206004820152600760248201526662616c616e636560c81b6044820152606401610377565b61052e82826107a2565b6001600160a01b038086165f9081526001602052604080822093909355908516815290812080548492906105639084906107b5565b92505081905550826001600160a01b0316846001600160a01b03167fddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef846040516105af91815260200190565b60405180910390a350505050565b6001600160a01b0382165f9081526003602052604090205460ff161580156105fd57506001600160a01b0381165f9081526003602052604090205460ff16155b6106375760405162461bcd60e51b815260206004820152600b60248201526a189b1858dadb1a5cdd195960aa1b6044820152606401610377565b5050565b602081525f82518060208401528060208501604085015e5f604082850101526040601f19601f83011684010191505092915050565b80356001600160a01b0381168114610686575f5ffd5b919050565b5f5f6040838503121561069c575f5ffd5b6106a583610670565b946020939093013593505050565b5f5f5f606084860312156106c5575f5ffd5b6106ce84610670565b92506106dc60208501610670565b929592945050506040919091013590565b80358015158114610686575f5ffd5b5f5f6040838503121561070d575f5ffd5b61071683610670565b9150610724602084016106ed565b90509250929050565b5f6020828403121561073d575f5ffd5b61074682610670565b9392505050565b5f6020828403121561075d575f5ffd5b610746826106ed565b5f5f60408385031215610777575f5ffd5b61078083610670565b915061072460208401610670565b634e487b7160e01b5f52601160045260245ffd5b818103818111156103165761031661078e565b808201808211156103165761031661078e56fea264697066735822122008393b94c93fc6cbd4aeebda03f152004d9dae71e77fd8a82d1acad7eeaa42b564736f6c634300081c0033';

export const localUsdtAbi = parseAbi([
  'function mint(address to, uint256 value)',
  'function balanceOf(address owner) view returns (uint256)',
  'function transfer(address to, uint256 value) returns (bool)',
  'function decimals() view returns (uint8)',
  'function blacklist(address who, bool on)',
  'function isBlackListed(address who) view returns (bool)',
  'function setReturnFalse(bool on)',
  'function returnFalse() view returns (bool)',
  'event Transfer(address indexed from, address indexed to, uint256 value)',
]);

const TIMEOUT_MS = 30_000;

async function clients(rpcUrl: string, key: Hex) {
  const client = createPublicClient({ pollingInterval: 100, transport: http(rpcUrl, { timeout: TIMEOUT_MS }) });
  const chain = await viemLocalChain(client, rpcUrl);
  const wallet = createWalletClient({
    account: privateKeyToAccount(key),
    chain,
    transport: http(rpcUrl, { timeout: TIMEOUT_MS }),
  });
  return { client, wallet };
}

/** Deploys LocalUSDT from `deployerKey` (which must hold ETH for gas) and returns its address. */
export async function deployLocalUsdt(rpcUrl: string, deployerKey: Hex): Promise<Address> {
  const receipt = await sendMined(rpcUrl, deployerKey, 'deployment', (wallet) =>
    wallet.deployContract({ abi: localUsdtAbi, bytecode: LOCAL_USDT_BYTECODE }),
  );
  if (!receipt.contractAddress) throw new Error(`LocalUSDT deployment failed (tx ${receipt.transactionHash})`);
  return receipt.contractAddress;
}

// The token actions below look alike but each types its own call; what they share (send, wait, check) is sendMined.
/** Mints `units` (6 decimals) to `to`, sent from `minterKey`. */
export async function mintLocalUsdt(
  rpcUrl: string,
  token: Address,
  minterKey: Hex,
  to: Address,
  units: bigint,
): Promise<void> {
  await sendMined(rpcUrl, minterKey, 'mint', (wallet) =>
    wallet.writeContract({ address: token, abi: localUsdtAbi, functionName: 'mint', args: [to, units] }),
  );
}

/** Puts `who` on (or off) the token's blacklist: transfers from or to it then revert, as Tether's do. */
export async function blacklistLocalUsdt(
  rpcUrl: string,
  token: Address,
  signerKey: Hex,
  who: Address,
  on: boolean,
): Promise<void> {
  await sendMined(rpcUrl, signerKey, 'blacklist', (wallet) =>
    wallet.writeContract({ address: token, abi: localUsdtAbi, functionName: 'blacklist', args: [who, on] }),
  );
}

/** While on, `transfer` returns false and moves nothing, without reverting (a non-standard token). */
export async function setLocalUsdtReturnFalse(
  rpcUrl: string,
  token: Address,
  signerKey: Hex,
  on: boolean,
): Promise<void> {
  await sendMined(rpcUrl, signerKey, 'setReturnFalse', (wallet) =>
    wallet.writeContract({ address: token, abi: localUsdtAbi, functionName: 'setReturnFalse', args: [on] }),
  );
}

/** Sends one transaction from `key` and waits until it is mined; its receipt, when it succeeded. */
async function sendMined(
  rpcUrl: string,
  key: Hex,
  what: string,
  send: (wallet: Awaited<ReturnType<typeof clients>>['wallet']) => Promise<Hex>,
): Promise<TransactionReceipt> {
  const { client, wallet } = await clients(rpcUrl, key);
  const hash = await send(wallet);
  const receipt = await client.waitForTransactionReceipt({ hash, timeout: TIMEOUT_MS });
  if (receipt.status !== 'success') throw new Error(`LocalUSDT ${what} failed (tx ${hash})`);
  return receipt;
}
