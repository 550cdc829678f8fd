public enum PurserCLIPlaceholder {}
