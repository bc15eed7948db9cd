// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// A USDT-like token for the local chain: 6 decimals, ERC-20 transfers, and an open mint so local runs and tests
/// can fund the host wallet and the ChangeNow simulator. Never deployed anywhere but a local anvil.
/// It can also misbehave as real tokens do, so tests can reproduce it: a Tether-like blacklist (transfers from or to
/// a listed address revert) and a non-standard mode where `transfer` returns false and moves nothing. Both switches
/// are open to anyone, which is only acceptable because this contract never leaves a local chain.
contract LocalUSDT {
    string public constant name = "Local Tether USD";
    string public constant symbol = "USDT";
    uint8 public constant decimals = 6;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    /// Tether's name for its blacklist, so a reader who knows USDT recognises it.
    mapping(address => bool) public isBlackListed;
    bool public returnFalse;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function mint(address to, uint256 value) external {
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function blacklist(address who, bool on) external {
        isBlackListed[who] = on;
    }

    function setReturnFalse(bool on) external {
        returnFalse = on;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        // Some tokens report failure by returning false instead of reverting: the transaction succeeds, nothing moves,
        // and no Transfer log is emitted. The blacklist still reverts first, as Tether's does.
        if (returnFalse) {
            _requireNotBlacklisted(msg.sender, to);
            return false;
        }
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance");
        if (allowed != type(uint256).max) allowance[from][msg.sender] = allowed - value;
        _move(from, to, value);
        return true;
    }

    function _requireNotBlacklisted(address from, address to) private view {
        require(!isBlackListed[from] && !isBlackListed[to], "blacklisted");
    }

    function _move(address from, address to, uint256 value) private {
        _requireNotBlacklisted(from, to);
        require(to != address(0), "zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "balance");
        balanceOf[from] = balance - value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
