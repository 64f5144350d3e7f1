using PowaCluster.Host.Cli;
using PowaCluster.Host.Startup;
using PowaCluster.Lab.Bench;
using PowaCluster.Lab.Demo;

namespace PowaCluster.Lab;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        LabOptions options;
        try { options = LabOptions.Parse(args); }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"powa-lab: {e.Message}");
            Console.Error.WriteLine(LabOptions.Usage);
            return 2;
        }
        try
        {
            return options.Command switch
            {
                "demo" => await DemoCommand.RunAsync(options),
                "bench" => await BenchCommand.RunAsync(options),
                "faults" => await Faults.FaultsCommand.RunAsync(options),
                "outage" => await Outage.OutageCommand.RunAsync(options),
                "scale" => await Scale.ScaleCommand.RunAsync(options),
                "rollout" => await Rollout.RolloutCommand.RunAsync(options),
                "stack-node" => await StackNode.RunAsync(),
                _ => Help(),
            };
        }
        catch (StartupException e)
        {
            Console.Error.WriteLine($"powa-lab: {e.Message}");
            return 1;
        }
    }

    static int Help()
    {
        Console.WriteLine(LabOptions.Usage);
        return 0;
    }
}
