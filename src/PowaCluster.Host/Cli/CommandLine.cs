using System.CommandLine;
using System.CommandLine.Help;

namespace PowaCluster.Host.Cli;

/// <summary>A command line that cannot be understood; the message says what is wrong.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// What powa-cluster was asked to do, read by System.CommandLine (CommandLineSyntax): the command and its
/// options. "help" carries the parse result whose help text is printed.
/// </summary>
public sealed record CommandLine(
    string Command,
    string? Repository,
    string? ConfigFile,
    bool Debug,
    int? PoolSize,
    string? ClusterHost,
    int? ClusterPort,
    IReadOnlyList<string> Seeds,
    int? ServerId = null,
    int Timeout = 5,
    int? HttpPort = null,
    string? LogFormat = null)
{
    /// <summary>The parse result of --help / -h, whose Invoke prints the help of the command asked about.</summary>
    public ParseResult? Help { get; init; }

    public const string Hint = "run 'powa-cluster --help', or 'powa-cluster COMMAND --help', for the commands and their options";

    /// <exception cref="UsageException">the first thing wrong with the command line</exception>
    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var syntax = new CommandLineSyntax();
        var result = syntax.Root.Parse(args);
        if (result.Action is HelpAction) return Empty("help") with { Help = result };
        var command = result.CommandResult.Command;
        if (result.Errors.Count > 0)
        {
            if (result.UnmatchedTokens.FirstOrDefault() is { } token)
                throw new UsageException(command == syntax.Root || !token.StartsWith('-')
                    ? command == syntax.Root ? $"unknown command \"{token}\"" : $"unexpected argument \"{token}\" for {command.Name}"
                    : $"unknown option \"{token}\" for {command.Name}");
            if (command == syntax.Root) throw new UsageException("no command given");
            // An option given without its value: said as before System.CommandLine ("--repository needs a value").
            if (result.Errors[0].SymbolResult is System.CommandLine.Parsing.OptionResult { Tokens.Count: 0 } missing
                && missing.Option.Arity.MinimumNumberOfValues > 0)
                throw new UsageException($"{missing.Option.Name} needs a value");
            throw new UsageException(result.Errors[0].Message);
        }
        if (command == syntax.Root)
            return result.GetValue(syntax.Version) ? Empty("version") : throw new UsageException("no command given");
        if (command.Name == "version") return Empty("version");
        int? serverId = null;
        if (command.Name == "snapshot")
        {
            var id = result.GetValue(syntax.SnapshotServer);
            if (!int.TryParse(id, out var n) || n <= 0) throw new UsageException("snapshot needs a server id (powa_servers.id)");
            serverId = n;
        }
        else if (command.Name == "status") serverId = result.GetValue(syntax.StatusServer);
        return new CommandLine(command.Name, result.GetValue(syntax.Repository), result.GetValue(syntax.Config),
            result.GetValue(syntax.Debug), result.GetValue(syntax.PoolSize), result.GetValue(syntax.ClusterHost),
            result.GetValue(syntax.ClusterPort), result.GetValue(syntax.Seeds) ?? [], serverId,
            result.GetValue(syntax.Timeout) ?? (command.Name == "check" ? 10 : 5), result.GetValue(syntax.HttpPort),
            result.GetValue(syntax.LogFormat));
    }

    static CommandLine Empty(string command) => new(command, null, null, false, null, null, null, []);
}
