/** The conversion the ChangeNow tests ask about: 0.1455 ETH to USDT, both on Ethereum. */
export const ethToUsdtEstimate = {
  fromCurrency: 'eth',
  toCurrency: 'usdt',
  fromNetwork: 'eth',
  toNetwork: 'eth',
  fromAmount: '0.1455',
} as const;

/** The same conversion as an exchange to create, paid out to a wallet and tagged with its conversion's id. */
export const ethToUsdtExchange = {
  ...ethToUsdtEstimate,
  address: '0x8ba1f109551bD432803012645Ac136ddd64DBA72',
  userId: 'conv_01J',
  payload: { conversionId: 'conv_01J' },
};
