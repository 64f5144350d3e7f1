using System.Text.Json;

namespace PowaCluster.Collector.Configuration;

/// <summary>An invalid configuration file. The message names the file and what is wrong.</summary>
public sealed class ConfigFileException(string message) : Exception(message);

/// <summary>What powa-collector's JSON file holds: {"repository": {"dsn": "..."}, "debug": false}.</summary>
public sealed record ReferenceConfig(string Path, string RepositoryDsn, bool Debug);

/// <summary>
/// Reads powa-collector's configuration file, so that an existing install works unchanged.
/// The reference looks in these locations, first found wins.
/// </summary>
public static class ReferenceConfigFile
{
    public static IReadOnlyList<string> DefaultLocations()
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return
        [
            "/etc/powa-collector.conf",
            System.IO.Path.Combine(home, ".config", "powa-collector.conf"),
            System.IO.Path.Combine(home, ".powa-collector.conf"),
            "./powa-collector.conf",
        ];
    }

    /// <summary>The first file found in <paramref name="locations"/>, parsed; null when none exists.</summary>
    public static ReferenceConfig? FindAndLoad(IEnumerable<string> locations)
    {
        foreach (var path in locations)
            if (File.Exists(path))
                return Load(path);
        return null;
    }

    public static ReferenceConfig Load(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (FileNotFoundException) { throw new ConfigFileException($"configuration file {path} does not exist"); }
        catch (DirectoryNotFoundException) { throw new ConfigFileException($"configuration file {path} does not exist"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new ConfigFileException($"cannot read configuration file {path}: {e.Message}"); }
        return Parse(path, text);
    }

    public static ReferenceConfig Parse(string path, string text)
    {
        JsonDocument doc;
        try
        {
            // The reference's own sample has a trailing comma: accept it, and comments.
            doc = JsonDocument.Parse(text, new JsonDocumentOptions
            { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ConfigFileException($"configuration file {path} is not valid JSON (line {e.LineNumber + 1}): {FirstSentence(e.Message)}");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ConfigFileException($"configuration file {path} must hold a JSON object");
            if (!root.TryGetProperty("repository", out var repo) || repo.ValueKind != JsonValueKind.Object ||
                !repo.TryGetProperty("dsn", out var dsn) || dsn.ValueKind != JsonValueKind.String ||
                string.IsNullOrWhiteSpace(dsn.GetString()))
                throw new ConfigFileException($"configuration file {path} is invalid: it must contain a repository.dsn string, e.g. {{\"repository\": {{\"dsn\": \"postgresql://powa_user@localhost:5432/powa\"}}, \"debug\": false}}");
            var debug = false;
            if (root.TryGetProperty("debug", out var d))
            {
                debug = d.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False or JsonValueKind.Null => false,
                    _ => throw new ConfigFileException($"configuration file {path} is invalid: \"debug\" must be true or false"),
                };
            }
            return new ReferenceConfig(path, dsn.GetString()!, debug);
        }
    }

    // System.Text.Json messages end with "Path: $ | LineNumber: ..." details we already give.
    static string FirstSentence(string message)
    {
        var i = message.IndexOf(" Path:", StringComparison.Ordinal);
        return i > 0 ? message[..i] : message;
    }
}
