using System.CommandLine;
using NanoKv.Coordinator;

var root = new RootCommand("nanokv coordinator: routes writes, keeps metadata in RocksDB, runs ops commands")
{
    Cli.Serve(),
    Cli.Dev(),
};
return await root.Parse(args).InvokeAsync();
