namespace NanoKv.Coordinator.Api;

/// <summary>What may go into an HTTP header as is: visible ASCII, spaces and tabs.</summary>
internal static class HeaderText
{
    public static bool IsSendable(string s)
    {
        foreach (var c in s)
        {
            if (c is < ' ' or > '~' && c != '\t')
            {
                return false;
            }
        }
        return true;
    }
}
