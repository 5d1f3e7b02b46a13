using System.CommandLine;
using NanoKv.Coordinator;
using NanoKv.Ops;

var root = new RootCommand("nanokv coordinator: routes writes, keeps metadata in RocksDB, runs ops commands")
{
    Cli.Serve(),
    Cli.Dev(),
    MigrateMeta.Command(),
};
foreach (var ops in OpsCli.All())
{
    root.Subcommands.Add(ops);
}
return await root.Parse(args).InvokeAsync();
