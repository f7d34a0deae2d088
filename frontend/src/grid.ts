// AG Grid for every table: the modules it uses, registered once, and one theme.
import {
  CellStyleModule, ClientSideRowModelModule, ExternalFilterModule, ModuleRegistry, NumberFilterModule, QuickFilterModule,
  RowApiModule, RowStyleModule, TextFilterModule, TooltipModule, themeQuartz,
} from "ag-grid-community";

ModuleRegistry.registerModules([ClientSideRowModelModule, CellStyleModule, RowStyleModule, NumberFilterModule,
  TextFilterModule, QuickFilterModule, ExternalFilterModule, TooltipModule,
  RowApiModule]);  // getDisplayedRowCount: the table's "N shown" count after filters

export const gridTheme = themeQuartz.withParams({ fontSize: 12, rowHeight: 26, headerHeight: 30, spacing: 4 });
