/** Where the web console listens unless told otherwise (a module of its own: the CLI loads the console lazily). */
export const DEFAULT_WEB_LISTEN = "127.0.0.1:4780"
